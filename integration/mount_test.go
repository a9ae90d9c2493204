package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
)

// Time limits of the mount lifecycle. They are generous because partfs
// runs under the race detector on a small shared machine.
const (
	mountTimeout = 30 * time.Second // from start until the mount is live
	stopTimeout  = 60 * time.Second // from SIGTERM until partfs has flushed and exited
)

// env is one test's world: a fresh bucket on the package's MinIO server and
// a recording proxy in front of the server.
type env struct {
	t      testing.TB
	srv    *miniotest.Server
	s3     *s3.Client // talks to MinIO directly, never through the proxy
	bucket string
	proxy  *s3proxy.Proxy
}

func newEnv(t testing.TB) *env {
	t.Helper()
	requireFUSE(t)
	srv := miniotest.Shared(t)
	return &env{
		t:      t,
		srv:    srv,
		s3:     srv.Client(t),
		bucket: srv.NewBucket(t),
		proxy:  s3proxy.Start(t, srv.Endpoint),
	}
}

// requireFUSE fails the test when this machine cannot mount FUSE file systems.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("FUSE is not available (%v): load the fuse module, or run the tests in a container started with --device /dev/fuse --cap-add SYS_ADMIN", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Fatal("not root and fusermount3 not found: install fuse3 (apt-get install fuse3) or run the tests as root")
		}
	}
}

// mountConfig chooses the binary and the flags of one mount.
type mountConfig struct {
	plain       bool     // run the build without the race detector
	partSize    int64    // --part-size; default 8 MiB
	writeBuffer int64    // --write-buffer; default 128 MiB
	concurrency int      // --upload-concurrency; default 4
	extraArgs   []string // further flags, before the positional arguments
	extraEnv    []string // further environment variables
	// direct points partfs at MinIO itself instead of the recording proxy,
	// for measurements the proxy's own work must not disturb.
	direct bool
}

func (c *mountConfig) defaults() {
	if c.partSize == 0 {
		c.partSize = 8 * miB
	}
	if c.writeBuffer == 0 {
		c.writeBuffer = 128 * miB
	}
	if c.concurrency == 0 {
		c.concurrency = 4
	}
}

// args returns partfs's command line (without the binary) for endpoint,
// bucket and mountpoint; foreground adds -f.
func (c mountConfig) args(foreground bool, endpoint, bucket, dir string) []string {
	var args []string
	if foreground {
		args = append(args, "-f")
	}
	args = append(args,
		"--endpoint", endpoint,
		"--region", miniotest.Region,
		"--part-size", sizeArg(c.partSize),
		"--write-buffer", sizeArg(c.writeBuffer),
		"--upload-concurrency", strconv.Itoa(c.concurrency),
	)
	args = append(args, c.extraArgs...)
	return append(args, bucket, dir)
}

// sizeArg formats a size flag value in bytes.
func sizeArg(n int64) string { return strconv.FormatInt(n, 10) }

// partfsEnv is the environment partfs runs with: credentials for the test
// server and nothing from the user's own AWS setup (profiles, shared files,
// instance metadata) that could change which credentials are used.
func partfsEnv(accessKey, secretKey string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "AWS_") && name != "AWS_CA_BUNDLE" {
			continue
		}
		out = append(out, kv)
	}
	return append(out,
		"AWS_ACCESS_KEY_ID="+accessKey,
		"AWS_SECRET_ACCESS_KEY="+secretKey,
		"AWS_CONFIG_FILE=/nonexistent/partfs-test/config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/partfs-test/credentials",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// mount is a partfs process serving one mountpoint in the foreground.
type mount struct {
	t       testing.TB
	env     *env
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd.Wait returns
	waitErr error         // valid once exited is closed
	killed  bool          // killed on purpose: a dirty exit is expected
	// dirtyExit: the test expects partfs to exit non-zero by itself.
	dirtyExit bool
}

// mount starts partfs -f on a new mountpoint for the test's bucket, through
// the proxy, and waits until the mount is live. t.Cleanup stops it and
// unmounts.
func (e *env) mount(cfg mountConfig) *mount {
	e.t.Helper()
	return e.mountSource(cfg, e.bucket)
}

// mountSource is mount with the BUCKET[:PREFIX] operand given, for mounts
// of a prefix.
func (e *env) mountSource(cfg mountConfig, source string) *mount {
	t := e.t
	t.Helper()
	cfg.defaults()
	tmp := t.TempDir()
	m := &mount{
		t:       t,
		env:     e,
		dir:     filepath.Join(tmp, "mnt"),
		logPath: filepath.Join(tmp, "partfs.log"),
		exited:  make(chan struct{}),
	}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	endpoint := e.proxy.URL()
	if cfg.direct {
		endpoint = e.srv.Endpoint
	}
	m.cmd = exec.Command(partfsBinary(t, !cfg.plain), cfg.args(true, endpoint, source, m.dir)...)
	m.cmd.Env = append(partfsEnv(e.srv.AccessKey, e.srv.SecretKey), cfg.extraEnv...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start partfs: %v", err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(m.cleanup)
	if err := waitMounted(m.dir, mountTimeout, m.exited); err != nil {
		t.Fatalf("partfs did not mount %s: %v\n%s", m.dir, err, m.logTail())
	}
	return m
}

// path returns the path of name inside the mount.
func (m *mount) path(name string) string { return filepath.Join(m.dir, name) }

// pid is partfs's process ID.
func (m *mount) pid() int { return m.cmd.Process.Pid }

// kill sends SIGKILL and waits for the process to end; the mount is left
// dead for cleanup to remove.
func (m *mount) kill() {
	m.killed = true
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

// stop sends SIGTERM, which must flush every dirty file, unmount and exit 0.
func (m *mount) stop() {
	t := m.t
	t.Helper()
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(stopTimeout):
			t.Errorf("partfs still running %v after SIGTERM; killing it", stopTimeout)
			m.kill()
		}
	}
	if !m.killed && !m.dirtyExit && m.waitErr != nil {
		t.Errorf("partfs exited with %v after SIGTERM, want a clean exit\n%s", m.waitErr, m.logTail())
	}
}

// cleanup stops partfs and makes sure nothing stays mounted.
func (m *mount) cleanup() {
	t := m.t
	m.stop()
	if b, err := os.ReadFile(m.logPath); err == nil && strings.Contains(string(b), "WARNING: DATA RACE") {
		t.Errorf("the race detector fired in partfs:\n%s", b)
	}
	if mounted(m.dir) {
		if !m.killed {
			t.Errorf("%s still mounted after partfs exited", m.dir)
		}
		unmount(t, m.dir)
	}
	if t.Failed() {
		t.Logf("partfs log:\n%s", m.logTail())
	}
}

// logTail returns the end of partfs's output.
func (m *mount) logTail() string { return fileTail(m.logPath, 8<<10) }

// vmHWM returns the peak resident set size of partfs so far.
func (m *mount) vmHWM() int64 {
	m.t.Helper()
	v, err := procStatusBytes(m.pid(), "VmHWM")
	if err != nil {
		m.t.Fatal(err)
	}
	return v
}

// unmount removes a mount, lazily when a plain unmount fails (a dead FUSE
// server leaves a mount that answers ENOTCONN).
func unmount(t testing.TB, dir string) {
	t.Helper()
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Logf("umount %s: %v %s; trying umount -l", dir, err, out)
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount -l %s: %v %s", dir, err, out)
		}
	}
}

// waitMounted polls the mount table until dir is a mountpoint, the process
// behind exited is gone, or timeout passes.
func waitMounted(dir string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !mounted(dir) {
		select {
		case <-exited:
			return errors.New("partfs exited")
		case <-ctx.Done():
			return fmt.Errorf("not mounted after %v", timeout)
		case <-tick.C:
		}
	}
	return nil
}

// mounted reports whether dir is a mountpoint in this process's mount table.
func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Fields: ID, parent ID, major:minor, root, mount point, …
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procStatusBytes reads a "kB" field such as VmHWM from /proc/PID/status.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s of %d: %q: %w", field, pid, rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// fileTail returns the last max bytes of a file.
func fileTail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}
