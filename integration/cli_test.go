package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
)

// startupLimit is how long partfs may take to refuse bad input.
const startupLimit = 15 * time.Second

// daemonRun is the outcome of running partfs without -f.
type daemonRun struct {
	err     error
	output  string // stdout and stderr
	elapsed time.Duration
}

// runDaemon runs partfs in daemon mode (no -f) and waits for the parent to
// return, as `partfs … && ls MOUNTPOINT` does. The daemon must not keep the
// parent's stdout and stderr open, or a shell capturing them would hang.
func runDaemon(t *testing.T, args []string, accessKey, secretKey string) daemonRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startupLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, partfsBinary(t, true), args...)
	cmd.Env = partfsEnv(accessKey, secretKey)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := daemonRun{err: err, output: strings.TrimSpace(out.String()), elapsed: time.Since(start)}
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("partfs returned but something it started kept its stdout/stderr open")
	}
	return r
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestStartupErrors checks that bad input ends partfs quickly with one
// clear line and a non-zero status, and mounts nothing.
func TestStartupErrors(t *testing.T) {
	requireFUSE(t)
	srv := miniotest.Shared(t)
	bucket := srv.NewBucket(t)
	port := strconv.Itoa(closedPort(t))
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir")

	tests := []struct {
		name     string
		endpoint string
		bucket   string
		secret   string
		dir      string // default: a new empty directory
		partSize int64
		// want lists words of which the message must contain at least
		// one (case-insensitive).
		want []string
	}{
		{name: "missing bucket", bucket: "partfs-no-such-bucket", want: []string{"partfs-no-such-bucket"}},
		{name: "wrong credentials", secret: "not-the-secret",
			want: []string{"credential", "access denied", "signature", "forbidden", "invalidaccesskeyid", "403"}},
		{name: "unreachable endpoint", endpoint: "http://127.0.0.1:" + port,
			want: []string{"127.0.0.1:" + port, "connection refused", "unreachable", "connect"}},
		{name: "missing mountpoint", dir: missing, want: []string{missing}},
		{name: "non-empty mountpoint", dir: nonEmpty, want: []string{nonEmpty, "not empty"}},
		{name: "part size under 5 MiB", partSize: 4 * miB, want: []string{"5 mib", "5mib", "5242880"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mountConfig{partSize: tt.partSize}
			cfg.defaults()
			endpoint, b, secret, dir := srv.Endpoint, bucket, srv.SecretKey, tt.dir
			if tt.endpoint != "" {
				endpoint = tt.endpoint
			}
			if tt.bucket != "" {
				b = tt.bucket
			}
			if tt.secret != "" {
				secret = tt.secret
			}
			if dir == "" {
				dir = t.TempDir()
			}
			r := runDaemon(t, cfg.args(false, endpoint, b, dir), srv.AccessKey, secret)
			if mounted(dir) {
				unmount(t, dir)
				t.Errorf("%s was mounted despite the error", dir)
			}
			if r.err == nil {
				t.Fatalf("partfs succeeded; output %q", r.output)
			}
			if r.elapsed > startupLimit {
				t.Errorf("partfs took %v to fail, want under %v", r.elapsed.Round(time.Millisecond), startupLimit)
			}
			if r.output == "" || strings.Contains(r.output, "\n") {
				t.Errorf("want exactly one line of explanation, got %q", r.output)
			}
			if !containsAny(strings.ToLower(r.output), tt.want) {
				t.Errorf("message %q mentions none of %q", r.output, tt.want)
			}
			t.Logf("%v after %v: %s", r.err, r.elapsed.Round(time.Millisecond), r.output)
		})
	}
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, strings.ToLower(w)) {
			return true
		}
	}
	return false
}

// TestDaemonMode checks that partfs without -f returns only once the mount
// is live, and that the daemon it leaves behind serves the mount and exits
// on SIGTERM.
func TestDaemonMode(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := mountConfig{}
	cfg.defaults()
	r := runDaemon(t, cfg.args(false, e.proxy.URL(), e.bucket, dir), e.srv.AccessKey, e.srv.SecretKey)
	pid := daemonPID(partfsBinary(t, true), dir)
	t.Cleanup(func() { stopDaemon(t, pid, dir) })
	if r.err != nil {
		t.Fatalf("partfs: %v: %s", r.err, r.output)
	}
	if !mounted(dir) {
		t.Fatalf("partfs returned before %s was mounted", dir)
	}
	if pid == 0 {
		t.Fatalf("no partfs process serves %s", dir)
	}
	want := []byte("written through a daemonised mount\n")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), want, 0o644); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := e.get("hello.txt"); !bytes.Equal(got, want) {
		t.Errorf("object = %q, want %q", got, want)
	}
}

// daemonPID finds the partfs process serving dir by its command line; the
// test started it, through the parent that has already exited.
func daemonPID(binary, dir string) int {
	entries, _ := os.ReadDir("/proc")
	for _, de := range entries {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || exe != binary {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && containsArg(strings.Split(string(cmdline), "\x00"), dir) {
			return pid
		}
	}
	return 0
}

func containsArg(args []string, dir string) bool {
	for _, a := range args {
		if a == dir || strings.HasSuffix(a, "="+dir) {
			return true
		}
	}
	return false
}

// stopDaemon sends SIGTERM to the daemon and waits for it to unmount and
// exit; it kills it and unmounts if that takes too long.
func stopDaemon(t testing.TB, pid int, dir string) {
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(stopTimeout)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processAlive(pid) {
			t.Errorf("partfs daemon %d still running %v after SIGTERM; killing it", pid, stopTimeout)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if mounted(dir) {
		t.Errorf("%s still mounted after the daemon exited", dir)
		unmount(t, dir)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
