package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
)

// dropPages makes the kernel forget its cached pages of the open file f,
// so that the next reads reach the file system.
func dropPages(t *testing.T, f *os.File) {
	t.Helper()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise: %v", err)
	}
}

// TestReReadHitsCache: a file opened again while its ETag is unchanged
// keeps the kernel's pages (FOPEN_KEEP_CACHE), and reads that reach partfs
// again are served by the block cache: no GET after the first read.
func TestReReadHitsCache(t *testing.T) {
	m := newMount(t, nil)
	body := testkit.RandomBytes(2, 3<<20+5)
	m.put(t, "f", body, nil)
	if got, err := os.ReadFile(m.path("f")); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	gets := len(m.st.CallsTo("Get"))
	before := m.cache.Stats()

	f, err := os.Open(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("second read: %d bytes, %v", len(got), err)
	}
	// Whether the kernel still holds every page also depends on memory
	// pressure and drop_caches elsewhere on the machine; the flags of the
	// open decide what partfs asks for.
	n := m.fileNode(t, "f")
	if flags := m.openFlags(t, n); flags != fuse.FOPEN_KEEP_CACHE {
		t.Errorf("open of an unchanged file: flags %#x, want FOPEN_KEEP_CACHE", flags)
	}

	dropPages(t, f)
	got := make([]byte, len(body))
	if n, err := f.ReadAt(got, 0); n != len(body) || (err != nil && err != io.EOF) || !bytes.Equal(got, body) {
		t.Fatalf("re-read of the open file: %d bytes, %v", n, err)
	}
	if s := m.cache.Stats(); s.Hits == before.Hits {
		t.Errorf("the re-read after dropping the kernel's pages hit no cached block")
	}
	if n := len(m.st.CallsTo("Get")); n != gets {
		t.Errorf("re-reads sent %d GETs, want none", n-gets)
	}

	// A new version: while f, open on the old one, reads through the page
	// cache, a new open goes around it; once f is closed, the kernel is
	// told to drop the old pages.
	m.put(t, "f", []byte("new"), nil)
	if flags := m.openFlags(t, n); flags != fuse.FOPEN_DIRECT_IO|fuse.FOPEN_KEEP_CACHE {
		t.Errorf("open of a new version while the old one is open: flags %#x, want FOPEN_DIRECT_IO|FOPEN_KEEP_CACHE", flags)
	}
	f.Close()
	// The kernel sends RELEASE after close(2) has returned.
	flags := m.openFlags(t, n)
	for deadline := time.Now().Add(5 * time.Second); flags&fuse.FOPEN_DIRECT_IO != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		flags = m.openFlags(t, n)
	}
	if flags != 0 {
		t.Errorf("open of a new version once the old one is closed: flags %#x, want none", flags)
	}
	if flags := m.openFlags(t, n); flags != fuse.FOPEN_KEEP_CACHE {
		t.Errorf("second open of the new version: flags %#x, want FOPEN_KEEP_CACHE", flags)
	}
}

// fileNode returns the node of the file name in the mount's root, which
// the kernel has looked up.
func (m *testMount) fileNode(t *testing.T, name string) *fileNode {
	t.Helper()
	ch := m.root.GetChild(name)
	if ch == nil {
		t.Fatalf("%s is not in the tree", name)
	}
	n, ok := ch.Operations().(*fileNode)
	if !ok {
		t.Fatalf("%s is a %T", name, ch.Operations())
	}
	return n
}

// openFlags opens n for reading as the kernel would, releases the handle
// and returns the FOPEN flags of the reply.
func (m *testMount) openFlags(t *testing.T, n *fileNode) uint32 {
	t.Helper()
	h, flags, errno := n.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatalf("open: %v", errno)
	}
	h.(*fileHandle).Release(context.Background())
	return flags
}

// version is an object body made of one repeated byte, so that a read
// mixing two versions shows.
func version(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// checkRead fails unless p, read with err, holds only the byte want and err
// is nil, io.EOF or ESTALE.
func checkRead(t *testing.T, what string, p []byte, err error, want byte) {
	t.Helper()
	if err != nil && err != io.EOF && !errors.Is(err, syscall.ESTALE) {
		t.Errorf("%s: %v, want success or ESTALE", what, err)
	}
	if i := bytes.IndexFunc(p, func(r rune) bool { return r != rune(want) }); i >= 0 {
		t.Errorf("%s: byte %d is %q in a read of version %q", what, i, p[i], want)
	}
}

// TestReplacedObjectNeverMixed replaces an object through the store (as
// another client would) while a descriptor reads it: that descriptor keeps
// reading the old version or fails with ESTALE, never returning new bytes;
// a new open sees the new version once the stat TTL has passed.
func TestReplacedObjectNeverMixed(t *testing.T) {
	const size = 2<<20 + 100
	const ttl = 300 * time.Millisecond
	m := newMount(t, nil, func(o *Options) { o.StatTTL = ttl })
	m.put(t, "v", version('A', size), nil)
	old, err := os.Open(m.path("v"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	buf := make([]byte, 256<<10)
	n, err := old.ReadAt(buf, 0)
	checkRead(t, "first read", buf[:n], err, 'A')
	if err != nil {
		t.Fatal(err)
	}

	m.put(t, "v", version('B', size), nil)
	stale := 0
	for off := int64(len(buf)); off < size; off += int64(len(buf)) {
		n, err := old.ReadAt(buf, off)
		checkRead(t, "read of the old descriptor", buf[:n], err, 'A')
		if errors.Is(err, syscall.ESTALE) {
			stale++
		}
	}
	t.Logf("%d of %d reads of the old descriptor failed with ESTALE", stale, size/len(buf))

	time.Sleep(ttl)
	if got, err := os.ReadFile(m.path("v")); err != nil || !bytes.Equal(got, version('B', size)) {
		t.Errorf("open after the stat TTL: %d bytes, %v; want the new version", len(got), err)
	}
	// The new version was read around the kernel's page cache, which the
	// old descriptor still reads.
	whole := make([]byte, size)
	n, err = old.ReadAt(whole, 0)
	checkRead(t, "whole-file read of the old descriptor", whole[:n], err, 'A')
}

// TestReadsNeverMix reads a file through fresh opens while another client
// keeps replacing it: every read returns one version whole, or ESTALE.
func TestReadsNeverMix(t *testing.T) {
	const size = 1<<20 + 7
	m := newMount(t, nil)
	bodies := [][]byte{version('A', size), version('B', size)}
	m.put(t, "v", bodies[0], nil)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(3 * time.Millisecond):
			}
			b := bodies[i%2]
			if _, err := m.st.Put(context.Background(), "v", b, store.Sum(b), store.PutOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	buf := make([]byte, size)
	for range 40 {
		f, err := os.Open(m.path("v"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := f.ReadAt(buf, 0)
		f.Close()
		if n == 0 {
			checkRead(t, "read", nil, err, 'A')
			continue
		}
		checkRead(t, "read", buf[:n], err, buf[0])
	}
}

// TestKernelReadAhead: the mount's read-ahead is raised to
// Options.KernelReadAhead when partfs may (as root), so that the kernel
// sends READs of up to 1 MiB; otherwise the kernel's 128 KiB stays.
func TestKernelReadAhead(t *testing.T) {
	m := newMount(t, nil)
	var st unix.Stat_t
	if err := unix.Stat(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "1024"
	if os.Geteuid() != 0 {
		want = "128"
	}
	if got := strings.TrimSpace(string(b)); got != want {
		t.Errorf("%s = %s, want %s", path, got, want)
	}
}
