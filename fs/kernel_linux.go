package fs

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setReadAhead sets the kernel's read-ahead of the mount at dir to n bytes:
// read_ahead_kb of the backing device info that the kernel gives each FUSE
// connection, named after the mount's device number. Writing it needs root.
func setReadAhead(dir string, n int64) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(strconv.FormatInt(max(n>>10, 1), 10)), 0)
}
