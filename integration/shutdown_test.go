package integration

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// waitUploadParts waits until n parts of key have been stored.
func (e *env) waitUploadParts(key string, n int, timeout time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
		return countDone(rs, key, s3proxy.OpUploadPart) >= n
	}); err != nil {
		e.t.Fatalf("waiting for %d parts of %s: %v", n, key, err)
	}
}

// TestSIGTERMDuringCopy sends SIGTERM while cp copies 500 MiB into the
// mount. partfs stores what it has, detaches the busy mount, lets cp finish
// and exits: either the object is complete and correct, or cp saw an error.
// Never a silent loss.
func TestSIGTERMDuringCopy(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	const key, size = "big-copy.bin", 500 * miB
	src := randomFileStream(t, 60, size)
	want := fileMD5(t, src)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp := exec.CommandContext(ctx, "cp", src, m.path(key))
	var cpOut strings.Builder
	cp.Stdout, cp.Stderr = &cpOut, &cpOut
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Wait() }()

	e.waitUploadParts(key, 2, time.Minute)
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cpErr := <-cpDone
	exitErr := m.waitExit(stopTimeout)
	t.Logf("cp: %v %s; partfs: %v", cpErr, strings.TrimSpace(cpOut.String()), exitErr)
	for _, line := range strings.Split(m.log(), "\n") {
		if strings.Contains(line, "unmount") || strings.Contains(line, "detach") {
			t.Log(line)
		}
	}
	if cpErr != nil {
		// cp was told; whatever is stored is not mistaken for the file.
		return
	}
	if exitErr != nil {
		t.Errorf("cp succeeded but partfs exited with %v\n%s", exitErr, m.logTail())
	}
	got, n := e.sum(key)
	if got != want || n != size {
		t.Errorf("cp succeeded but the object is %d bytes with md5 %x, want %d bytes with md5 %x", n, got, size, want)
	}
	if mounted(m.dir) {
		t.Errorf("%s still mounted after partfs exited", m.dir)
	}
}

// TestSecondSignal checks that a second SIGTERM ends partfs at once, with a
// clear message, while the first is still waiting for uploads that cannot
// finish, and that no dead mount is left behind.
func TestSecondSignal(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	const key = "stuck.bin"
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op == s3proxy.OpUploadPart && r.Key == key {
			return s3proxy.Delay(2 * time.Minute)
		}
		return s3proxy.Fault{}
	})
	defer e.proxy.SetFault(nil)
	w := startDD(t, m.path(key))
	if err := w.feed(testkit.RandomReader(61), 12*miB); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
		for _, r := range rs {
			if r.Op == s3proxy.OpUploadPart && r.Key == key {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no part was sent: %v", err)
	}

	m.killed = true // a dirty exit is what this test asks for
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case <-m.exited:
		t.Fatalf("partfs exited on the first signal although a part could not be stored\n%s", m.logTail())
	default:
	}
	start := time.Now()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := m.waitExit(15 * time.Second)
	t.Logf("partfs exited %v after the second signal: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Errorf("partfs exited 0 although a file could not be stored")
	}
	if log := m.log(); !strings.Contains(log, "second signal") || !strings.Contains(log, "unsaved_files=1") {
		t.Errorf("no clear message about the second signal and the unsaved file:\n%s", m.logTail())
	}
	if mounted(m.dir) {
		t.Errorf("%s left mounted after the second signal", m.dir)
	}
	if err := w.finish(30 * time.Second); err == nil {
		t.Errorf("dd succeeded although partfs gave up on its file")
	}
}

// TestLazyUnmount detaches the mount with umount -l while a file is being
// written: the writer finishes, the object is complete, and partfs exits
// by itself once the file is closed.
func TestLazyUnmount(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	const key = "detached.bin"
	w := startDD(t, m.path(key))
	src := testkit.RandomReader(62)
	if err := w.feed(src, 10*miB); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, 30*time.Second, "umount", "-l", m.dir); err != nil {
		t.Fatalf("umount -l: %v %s", err, out)
	}
	if mounted(m.dir) {
		t.Fatalf("%s still mounted after umount -l", m.dir)
	}
	select {
	case <-m.exited:
		t.Fatalf("partfs exited while a file was still open on the detached mount\n%s", m.logTail())
	case <-time.After(500 * time.Millisecond):
	}
	if err := w.feed(src, 14*miB); err != nil {
		t.Fatal(err)
	}
	if err := w.finish(time.Minute); err != nil {
		t.Fatalf("dd on the detached mount: %v", err)
	}
	if err := m.waitExit(stopTimeout); err != nil {
		t.Errorf("partfs exited with %v after the last file was closed\n%s", err, m.logTail())
	}
	e.checkObject(key, w.sum(), 24*miB)
}
