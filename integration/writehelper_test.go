package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
)

// writeHelperEnv, when set, turns the test binary into a small writer
// program: it writes PARTFS_TEST_SIZE bytes of the stream seeded by
// PARTFS_TEST_SEED into the file named by the variable, closes it, and
// reports on stdout which of the two steps failed. Only a separate process
// can report what close returned when the file lives on a FUSE mount served
// by another process without tying the test to a shell tool's messages.
const writeHelperEnv = "PARTFS_TEST_WRITE_FILE"

func writeHelper() int {
	path := os.Getenv(writeHelperEnv)
	size, err1 := strconv.ParseInt(os.Getenv("PARTFS_TEST_SIZE"), 10, 64)
	seed, err2 := strconv.ParseUint(os.Getenv("PARTFS_TEST_SEED"), 10, 64)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "write helper: bad PARTFS_TEST_SIZE or PARTFS_TEST_SEED")
		return 2
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		fmt.Printf("open=%v\n", err)
		return 0
	}
	_, werr := io.CopyN(f, testkit.RandomReader(seed), size)
	cerr := f.Close()
	fmt.Printf("open=ok write=%s close=%s\n", errWord(werr), errWord(cerr))
	return 0
}

func errWord(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// writeResult is what the write helper reported.
type writeResult struct {
	open, write, close string // "ok" or the error
}

// runWriteHelper runs the test binary as the write helper against path.
func runWriteHelper(t *testing.T, path string, seed uint64, size int64, timeout time.Duration) writeResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		writeHelperEnv+"="+path,
		"PARTFS_TEST_SIZE="+strconv.FormatInt(size, 10),
		"PARTFS_TEST_SEED="+strconv.FormatUint(seed, 10),
	)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("writing %s did not finish within %v", path, timeout)
	}
	if err != nil {
		t.Fatalf("write helper: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	var r writeResult
	for _, field := range strings.Fields(out) {
		k, v, _ := strings.Cut(field, "=")
		switch k {
		case "open":
			r.open = v
		case "write":
			r.write = v
		case "close":
			r.close = v
		}
	}
	return r
}
