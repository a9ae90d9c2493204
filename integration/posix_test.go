package integration

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sys/unix"
)

// TestSpecialFilesSurviveRemount makes a FIFO, a socket and a character
// device through a mount shared with other users, gives them owners, and
// checks after mounting again that type, mode, owner and device number are
// what was made, and that another S3 client sees empty objects carrying
// s3fs's metadata. Times set with utimensat (atime apart from mtime, with
// nanoseconds) survive too.
func TestSpecialFilesSurviveRemount(t *testing.T) {
	e := newEnv(t)
	cfg := mountConfig{extraArgs: []string{"--allow-other"}}
	m := e.mount(cfg)
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	if err := syscall.Mkfifo(m.path("fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	dev := int(unix.Mkdev(1, 7))
	if err := syscall.Mknod(m.path("chr"), syscall.S_IFCHR|0o620, dev); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: m.path("sock")}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	for _, name := range []string{"fifo", "chr", "sock"} {
		if err := os.Lchown(m.path(name), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(m.path("file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	atime, mtime := time.Unix(100000000, 123456789), time.Unix(200000000, 987654321)
	if err := os.Chtimes(m.path("file"), atime, mtime); err != nil {
		t.Fatal(err)
	}

	m2 := e.remount(m, cfg)
	want := map[string]struct {
		mode uint32
		rdev uint64
	}{
		"fifo": {syscall.S_IFIFO | 0o640, 0},
		"chr":  {syscall.S_IFCHR | 0o620, uint64(dev)},
		"sock": {syscall.S_IFSOCK | 0o777, 0},
	}
	for name, w := range want {
		var st syscall.Stat_t
		if err := syscall.Lstat(m2.path(name), &st); err != nil {
			t.Errorf("lstat %s after remount: %v", name, err)
			continue
		}
		if st.Mode != w.mode || st.Rdev != w.rdev || st.Uid != 1234 || st.Gid != 5678 || st.Size != 0 {
			t.Errorf("%s after remount: mode %o rdev %#x owner %d:%d size %d, want %o %#x 1234:5678 0",
				name, st.Mode, st.Rdev, st.Uid, st.Gid, st.Size, w.mode, w.rdev)
		}
		key := name
		out, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: &key})
		if err != nil {
			t.Errorf("HEAD %s: %v", name, err)
			continue
		}
		md := map[string]string{"mode": strconv.FormatUint(uint64(w.mode), 10), "uid": "1234", "gid": "5678"}
		if w.rdev != 0 {
			md["rdev"] = strconv.FormatUint(w.rdev, 10)
		}
		for k, v := range md {
			if out.Metadata[k] != v {
				t.Errorf("%s: x-amz-meta-%s %q, want %q (all: %v)", name, k, out.Metadata[k], v, out.Metadata)
			}
		}
		if _, ok := out.Metadata["mtime"]; !ok {
			t.Errorf("%s: no x-amz-meta-mtime (all: %v)", name, out.Metadata)
		}
		if out.ContentLength == nil || *out.ContentLength != 0 {
			t.Errorf("%s: object of %v bytes, want empty", name, out.ContentLength)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(m2.path("file"), &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Atim.Sec, st.Atim.Nsec); !got.Equal(atime) {
		t.Errorf("atime after remount %v, want %v", got, atime)
	}
	if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec); !got.Equal(mtime) {
		t.Errorf("mtime after remount %v, want %v", got, mtime)
	}
	err = os.Symlink("target", m2.path("fifo"))
	if !errors.Is(err, syscall.EEXIST) {
		t.Errorf("symlink onto the FIFO: %v, want EEXIST", err)
	}
	for _, name := range []string{"fifo", "chr", "sock", "file"} {
		if err := os.Remove(m2.path(name)); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
		if e.exists(name) {
			t.Errorf("%s still in the bucket after remove", name)
		}
	}
}

// TestLongNames: names of 255 bytes work as files; a directory whose name
// MinIO cannot store (it keeps a directory marker as a file of the name
// plus a suffix, so directory names near 255 bytes fail there) and a key
// past S3's 1,024 bytes fail with ENAMETOOLONG, never EIO, and store no
// other name in its place.
func TestLongNames(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	long := strings.Repeat("a", 255)
	if err := os.WriteFile(m.path(long), []byte("x"), 0o644); err != nil {
		t.Fatalf("a 255-byte file name: %v", err)
	}
	if !e.exists(long) {
		t.Error("the 255-byte name is not in the bucket")
	}
	err := os.Mkdir(m.path(strings.Repeat("b", 255)), 0o755)
	if err != nil && !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("mkdir of a 255-byte name: %v, want success or ENAMETOOLONG", err)
	}
	dir := ""
	for range 4 {
		dir += strings.Repeat("d", 200) + "/"
		if err := os.Mkdir(m.path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := dir + strings.Repeat("f", 1025-len(dir))
	err = os.WriteFile(m.path(name), []byte("x"), 0o644)
	if !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create of a 1,025-byte key: %v, want ENAMETOOLONG", err)
	}
	if e.exists(name[:1024]) {
		t.Error("the refused key, shortened, is in the bucket")
	}
}
