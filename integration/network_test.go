package integration

import (
	"bufio"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// The timeouts of the mounts in these tests. Every bound a test checks is
// a generous multiple of them, to catch a hang, not to measure speed.
const (
	testIOTimeout   = 2 * time.Second
	testRetryBudget = 8 * time.Second
)

// flakyArgs are the flags of a mount on a flaky network.
var flakyArgs = []string{"--io-timeout", testIOTimeout.String(), "--retry-budget", testRetryBudget.String()}

// getRange returns the first and last byte of a ranged GET.
func getRange(r s3proxy.Request) (first, last int64, ok bool) {
	spec, found := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !found {
		return 0, 0, false
	}
	a, b, _ := strings.Cut(spec, "-")
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	return first, last, err1 == nil && err2 == nil
}

// readThrough reads the whole file at path and returns its MD5 and size.
func readThrough(path string) ([md5.Size]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return [md5.Size]byte{}, 0, err
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(h, f)
	var sum [md5.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, err
}

// TestCutReads reads 200 MiB while every fourth GET body is cut half-way:
// the bytes must be right, and every re-request must start at the first
// byte the cut body did not deliver, not at the start of its block.
func TestCutReads(t *testing.T) {
	e := newEnv(t)
	const key, size = "cut.bin", 200 * miB
	want := md5.Sum(testkit.RandomBytes(21, size))
	e.put(key, testkit.RandomBytes(21, size))
	m := e.mount(mountConfig{extraArgs: flakyArgs})

	var gets atomic.Int64
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op != s3proxy.OpGetObject || r.Key != key {
			return s3proxy.Fault{}
		}
		first, last, ok := getRange(*r)
		if !ok || gets.Add(1)%4 != 0 {
			return s3proxy.Fault{}
		}
		return s3proxy.CutResponse((last - first + 1) / 2)
	})
	defer e.proxy.SetFault(nil)
	got, n, err := readThrough(m.path(key))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n != size || got != want {
		t.Fatalf("read %d bytes with md5 %x, want %d with %x", n, got, int64(size), want)
	}
	e.settle()
	var cuts, resumed int
	rs := e.proxy.Ops(s3proxy.OpGetObject)
	for i, r := range rs {
		if r.Fault.Kind != s3proxy.FaultCutResponse {
			continue
		}
		cuts++
		first, last, _ := getRange(r)
		from := first + r.Fault.After
		found := false
		for _, later := range rs[i+1:] {
			if f, l, ok := getRange(later); ok && f == from && l == last {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("the GET of bytes %d-%d was cut after %d bytes, and no later GET asked for bytes %d-%d", first, last, r.Fault.After, from, last)
			continue
		}
		resumed++
	}
	if cuts < 3 {
		t.Fatalf("only %d GETs were cut; the test did not exercise resuming", cuts)
	}
	t.Logf("%d GETs, %d cut, %d resumed from the first missing byte", len(rs), cuts, resumed)
}

// TestStalledRead stops one GET body half-way and keeps its connection
// open: the read must still return the right bytes, well within the bound
// that --io-timeout sets.
func TestStalledRead(t *testing.T) {
	e := newEnv(t)
	const key, size = "stalled.bin", 48 * miB
	body := testkit.RandomBytes(22, size)
	e.put(key, body)
	m := e.mount(mountConfig{extraArgs: flakyArgs})
	var once sync.Once
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		f := s3proxy.Fault{}
		if r.Op == s3proxy.OpGetObject && r.Key == key {
			if first, last, ok := getRange(*r); ok {
				once.Do(func() { f = s3proxy.StallResponse((last-first+1)/2, 0) })
			}
		}
		return f
	})
	defer e.proxy.SetFault(nil)
	bound := 10*testIOTimeout + 30*time.Second
	start := time.Now()
	done := make(chan error, 1)
	var got [md5.Size]byte
	var n int64
	go func() {
		var err error
		got, n, err = readThrough(m.path(key))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("the read still waits %v after one GET stalled, with --io-timeout %v", bound, testIOTimeout)
	}
	if n != size || got != md5.Sum(body) {
		t.Fatalf("read %d bytes, md5 %x; want %d, %x", n, got, int64(size), md5.Sum(body))
	}
	stalled := 0
	for _, r := range e.proxy.Ops(s3proxy.OpGetObject) {
		if r.Fault.Kind == s3proxy.FaultStallResponse {
			stalled++
		}
	}
	if stalled != 1 {
		t.Fatalf("%d GETs stalled, want 1", stalled)
	}
	t.Logf("read with one stalled GET in %v", time.Since(start).Round(time.Millisecond))
}

// TestBlackholedPart never reads nor answers the first attempt of one
// UploadPart: cp must still succeed, the object be right, and no upload
// be left behind.
func TestBlackholedPart(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: flakyArgs})
	const key, size = "blackholed.bin", 64 * miB
	src, body := randomFile(t, 23, size)
	e.proxy.SetFault(faultOnce(s3proxy.OpUploadPart, key, func(part int) s3proxy.Fault {
		if part == 3 {
			return s3proxy.Blackhole(0)
		}
		return s3proxy.Fault{}
	}))
	defer e.proxy.SetFault(nil)
	if out, err := run(t, 3*time.Minute, "cp", src, m.path(key)); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	e.checkObject(key, md5.Sum(body), size)
	if ups := e.uploads(); len(ups) > 0 {
		t.Errorf("%d multipart uploads left behind", len(ups))
	}
	holes := 0
	for _, r := range e.proxy.Ops(s3proxy.OpUploadPart) {
		if r.Fault.Kind == s3proxy.FaultBlackhole {
			holes++
		}
	}
	if holes != 1 {
		t.Fatalf("%d UploadParts blackholed, want 1", holes)
	}
}

// TestUnreachable takes S3 away in the middle of a write, for good: close
// must fail within the retry budget, partfs status must still answer and
// name the file, umount must return at once, and partfs must exit non-zero
// naming the file it could not store. S3 comes back before the unmount, so
// partfs can and must abort the upload it left.
func TestUnreachable(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: flakyArgs})
	const key = "unreachable.bin"
	w := startDD(t, m.path(key))
	if err := w.feed(testkit.RandomReader(24), 20*miB); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
		for _, r := range rs {
			if r.Op == s3proxy.OpUploadPart && r.Done() && r.Status == 200 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no part stored before the outage: %v", err)
	}

	e.proxy.Down()
	start := time.Now()
	err := w.finish(testRetryBudget + 10*testIOTimeout + 30*time.Second)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("dd succeeded although S3 was unreachable")
	}
	t.Logf("close failed after %v: %v", took.Round(time.Millisecond), err)

	start = time.Now()
	out, serr := e.runPartfs("status", m.dir)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("partfs status took %v while S3 was unreachable", d)
	}
	if serr != nil || !strings.Contains(out, key) {
		t.Errorf("partfs status while S3 is unreachable: %v\n%s", serr, out)
	}

	if err := e.proxy.Up(); err != nil {
		t.Fatal(err)
	}
	m.dirtyExit = true
	start = time.Now()
	if err := syscall.Unmount(m.dir, 0); err != nil {
		t.Fatalf("umount: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("umount took %v", d)
	}
	exitErr := m.waitExit(testRetryBudget + 10*testIOTimeout + 30*time.Second)
	if exitErr == nil {
		t.Errorf("partfs exited 0 although %s was not stored", key)
	}
	log := m.log()
	if !strings.Contains(log, "NOT stored") || !strings.Contains(log, key) {
		t.Errorf("the log does not name the file that was not stored:\n%s", m.logTail())
	}
	if !strings.Contains(log, "UploadPart") || !strings.Contains(log, "giving up") {
		t.Errorf("no log line names the operation that gave up and its last error:\n%s", m.logTail())
	}
	if ups := e.uploads(); len(ups) > 0 {
		t.Errorf("%d multipart uploads left that partfs could have aborted", len(ups))
	}
	if e.exists(key) {
		// Only the empty file its creation stored may be there.
		if _, n := e.head(key); n != 0 {
			t.Errorf("%s holds %d bytes although its write failed", key, n)
		}
	}
}

// TestUnreachableStop keeps S3 away through SIGTERM: partfs must still
// exit within its stated bound, non-zero, naming the file with unsaved
// changes, and leave no dead mount.
func TestUnreachableStop(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: flakyArgs})
	const key = "unsaved.bin"
	w := startDD(t, m.path(key))
	if err := w.feed(testkit.RandomReader(25), 3*miB); err != nil {
		t.Fatal(err)
	}
	e.proxy.Down()
	defer e.proxy.Up()
	m.dirtyExit = true
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// partfs stores what it can, then detaches the mount, which dd still
	// holds open, and exits once dd closes its file: dd closes it now, and
	// that close fails too.
	ddDone := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		ddDone <- w.finish(3 * time.Minute)
	}()
	// The stated bound, twice (the sync at the signal, then dd's close):
	// the retry budget plus two stalls once S3 stops answering; the rest
	// is slack for the race detector.
	exitErr := m.waitExit(2*(testRetryBudget+2*testIOTimeout) + 30*time.Second)
	if exitErr == nil {
		t.Errorf("partfs exited 0 although %s was not stored", key)
	}
	if log := m.log(); !strings.Contains(log, key) {
		t.Errorf("the log does not name %s:\n%s", key, m.logTail())
	}
	if mounted(m.dir) {
		t.Errorf("%s still mounted after partfs exited", m.dir)
	}
	if err := <-ddDone; err == nil {
		t.Errorf("dd succeeded although its file was not stored")
	}
}

// TestEndpointRestart kills MinIO and starts it again, on the same port
// with the same data, in the middle of a 500 MiB cp and of a 500 MiB read.
func TestEndpointRestart(t *testing.T) {
	requireFUSE(t)
	srv := miniotest.Start(t)
	e := &env{t: t, srv: srv, s3: srv.Client(t), bucket: srv.NewBucket(t), proxy: s3proxy.Start(t, srv.Endpoint)}
	m := e.mount(mountConfig{extraArgs: []string{"--io-timeout", "5s"}})
	const size = 500 * miB

	restartAfter := func(op string, n int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
			c := 0
			for _, r := range rs {
				if r.Op == op {
					c++
				}
			}
			return c >= n
		}); err != nil {
			t.Errorf("waiting for %d %s: %v", n, op, err)
			return
		}
		if err := srv.Restart(time.Second); err != nil {
			t.Errorf("restart MinIO: %v", err)
		}
	}

	// failures counts the requests the restart broke; none would mean the
	// restart missed the transfer and the test proved nothing.
	failures := func() int {
		n := 0
		for _, r := range e.proxy.Requests() {
			if r.Status == 0 || r.Status >= 500 {
				n++
			}
		}
		return n
	}

	t.Run("write", func(t *testing.T) {
		e.proxy.Reset()
		const key = "restart-write.bin"
		src, body := randomFile(t, 26, size)
		done := make(chan struct{})
		go func() { defer close(done); restartAfter(s3proxy.OpUploadPart, 8) }()
		out, err := run(t, 5*time.Minute, "cp", src, m.path(key))
		<-done
		if err != nil {
			t.Fatalf("cp across a restart: %v\n%s", err, out)
		}
		e.checkObject(key, md5.Sum(body), size)
		if failures() == 0 {
			t.Error("no request failed: the restart did not meet the write")
		}
	})

	t.Run("read", func(t *testing.T) {
		const key = "restart-read.bin"
		body := testkit.RandomBytes(27, size)
		e.put(key, body)
		e.proxy.Reset()
		done := make(chan struct{})
		go func() { defer close(done); restartAfter(s3proxy.OpGetObject, 10) }()
		got, n, err := readThrough(m.path(key))
		<-done
		if err != nil {
			t.Fatalf("read across a restart: %v", err)
		}
		if n != size || got != md5.Sum(body) {
			t.Fatalf("read %d bytes with md5 %x, want %d with %x", n, got, int64(size), md5.Sum(body))
		}
		if failures() == 0 {
			t.Error("no request failed: the restart did not meet the read")
		}
	})
}

// readHelperEnv makes the test binary a reader: it reads PARTFS_TEST_READ
// with O_DIRECT (so the read is a request of its own, not the kernel's
// read-ahead), catching SIGUSR1 instead of dying of it, and prints the
// errno the read ended with.
const readHelperEnv = "PARTFS_TEST_READ"

func readHelper() int {
	path := os.Getenv(readHelperEnv)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		fmt.Println("open", err)
		return 1
	}
	buf := alignedBuffer(1 << 20)
	// A signal sent to the process may land on any of its threads; the
	// test sends it to the one blocked in the read, as a terminal's
	// Ctrl-C reaches a single-threaded program.
	runtime.LockOSThread()
	fmt.Println("reading", syscall.Gettid())
	n, err := syscall.Pread(fd, buf, 0)
	switch {
	case err == syscall.EINTR:
		fmt.Println("errno=EINTR")
	case err != nil:
		fmt.Printf("errno=%d %v\n", err, err)
	default:
		fmt.Println("read", n)
	}
	return 0
}

// alignedBuffer returns n bytes aligned for O_DIRECT.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := align - int(uintptr(unsafe.Pointer(&b[0]))%align)
	if off == align {
		off = 0
	}
	return b[off : off+n]
}

// TestReadInterruptedDuringStall interrupts a read whose GET stalls (with
// an --io-timeout far longer than the test waits): the reader must get
// EINTR promptly, not wait for the stall to be noticed.
func TestReadInterruptedDuringStall(t *testing.T) {
	e := newEnv(t)
	const key = "interrupted.bin"
	e.put(key, testkit.RandomBytes(28, 4*miB))
	m := e.mount(mountConfig{extraArgs: []string{"--io-timeout", "10m", "--retry-budget", "20m"}})
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op == s3proxy.OpGetObject && r.Key == key {
			return s3proxy.StallResponse(0, 0)
		}
		return s3proxy.Fault{}
	})
	defer e.proxy.SetFault(nil)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), readHelperEnv+"="+m.path(key))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer cmd.Wait()
	var tid int
	if l := <-lines; !strings.HasPrefix(l, "reading ") {
		t.Fatalf("reader: %q", l)
	} else if tid, err = strconv.Atoi(strings.TrimPrefix(l, "reading ")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the GET is out and stalled
	select {
	case l, ok := <-lines:
		t.Fatalf("the read ended before it was interrupted: %q %v", l, ok)
	default:
	}
	start := time.Now()
	if err := syscall.Tgkill(cmd.Process.Pid, tid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	const bound = 15 * time.Second
	select {
	case l := <-lines:
		if l != "errno=EINTR" {
			t.Fatalf("interrupted read: %q, want EINTR", l)
		}
		t.Logf("EINTR %v after the signal", time.Since(start).Round(time.Millisecond))
	case <-time.After(bound):
		cmd.Process.Kill()
		e.proxy.SetFault(nil)
		t.Fatalf("the interrupted read did not return within %v", bound)
	}
}

// TestOutageWithinBudget answers every request 503 for a while in the
// middle of a cp: an outage shorter than the retry budget is ridden out.
func TestOutageWithinBudget(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: []string{"--io-timeout", "5s", "--retry-budget", "40s"}})
	const key, size = "outage.bin", 96 * miB
	src, body := randomFile(t, 29, size)
	var until atomic.Int64
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if time.Now().UnixNano() < until.Load() {
			return s3proxy.SlowDown()
		}
		return s3proxy.Fault{}
	})
	defer e.proxy.SetFault(nil)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
			for _, r := range rs {
				if r.Op == s3proxy.OpUploadPart {
					return true
				}
			}
			return false
		})
		until.Store(time.Now().Add(15 * time.Second).UnixNano())
	}()
	if out, err := run(t, 3*time.Minute, "cp", src, m.path(key)); err != nil {
		t.Fatalf("cp through a 15s outage: %v\n%s", err, out)
	}
	e.checkObject(key, md5.Sum(body), size)
	slow := 0
	for _, r := range e.proxy.Requests() {
		if r.Fault.Kind == s3proxy.FaultStatus {
			slow++
		}
	}
	if slow == 0 {
		t.Fatal("no request met the outage")
	}
}
