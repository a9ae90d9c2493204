package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// callCounts counts the store's logged calls by method, failed ones
// included (a HEAD of a missing key is a request too).
func callCounts(st *memstore.Store) map[string]int {
	n := map[string]int{}
	for _, c := range st.Calls() {
		n[c.Name]++
	}
	return n
}

// lsLong makes the system calls ls -l makes: lstat of the directory, then
// getdents(2) into a 32 KiB buffer, as glibc's readdir does, with an lstat
// of every entry before the next getdents. It returns the results by name.
func lsLong(t *testing.T, dir string) map[string]syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	buf := make([]byte, 32<<10)
	out := map[string]syscall.Stat_t{}
	for {
		n, err := syscall.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents %s: %v", dir, err)
		}
		if n == 0 {
			return out
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil) // without "." and ".."
		for _, name := range names {
			if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
				t.Fatalf("lstat %s: %v", name, err)
			}
			out[name] = st
		}
	}
}

// kernelCaching lets the kernel keep entries and attributes, as a real
// mount does, so that READDIRPLUS answers the lstat calls of ls -l.
func kernelCaching(o *Options) {
	o.AttrTimeout, o.EntryTimeout = time.Minute, time.Minute
}

// TestLsLongFewRequests lists 5,000 objects with ls -l through a fresh
// mount over a store that takes 2 ms per request. The bound: LOOKUP of the
// directory is one HEAD and one single-key listing; READDIR reads the 5
// listing pages (memstore, like S3, pages 1,000 keys) once; READDIRPLUS
// sends one HEAD per object (listings carry no user metadata), each object
// exactly once, 32 at a time; the lstat calls are answered by the kernel.
// That is 6 List and 5,001 Stat requests, and at 2 ms a request the HEADs
// alone would take 10 s one after the other.
func TestLsLongFewRequests(t *testing.T) {
	const n, delay = 5000, 2 * time.Millisecond
	st := memstore.New(memstore.Options{})
	mtime := time.Unix(1700000000, 0)
	for i := range n {
		key := fmt.Sprintf("big/f%04d", i)
		md := store.Metadata{"mode": "33184", "uid": "7", "gid": "8", "mtime": strconv.FormatInt(mtime.Unix()+int64(i), 10)}
		if _, err := st.Put(context.Background(), key, []byte(key), store.Sum([]byte(key)), store.PutOptions{Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	const ttl = 4 * time.Second
	m := newMount(t, st, kernelCaching, func(o *Options) { o.StatTTL = ttl })
	st.ResetCalls()
	st.SetFault(func(memstore.Op) error { time.Sleep(delay); return nil })

	start := time.Now()
	got := lsLong(t, m.path("big"))
	elapsed := time.Since(start)
	calls := callCounts(st)
	t.Logf("ls -l of %d objects at %v a request: %v, %d List, %d Stat", n, delay, elapsed, calls["List"], calls["Stat"])

	if len(got) != n {
		t.Errorf("ls -l listed %d entries, want %d", len(got), n)
	}
	for i := range n {
		name := fmt.Sprintf("f%04d", i)
		s, ok := got[name]
		if !ok {
			t.Errorf("%s not listed", name)
			continue
		}
		if s.Mode != syscall.S_IFREG|0o640 || s.Uid != 7 || s.Gid != 8 || s.Mtim.Sec != mtime.Unix()+int64(i) || s.Size != int64(len("big/"+name)) {
			t.Errorf("%s: mode %o uid %d gid %d mtime %d size %d", name, s.Mode, s.Uid, s.Gid, s.Mtim.Sec, s.Size)
		}
	}
	if calls["List"] != 6 || calls["Stat"] != n+1 || len(calls) != 2 {
		t.Errorf("requests %v, want 6 List and %d Stat", calls, n+1)
	}
	heads := map[string]int{}
	for _, c := range st.Calls() {
		if c.Name == "Stat" {
			heads[c.Key]++
		}
	}
	for k, c := range heads {
		if c != 1 {
			t.Errorf("%d HEADs of %s, want 1", c, k)
		}
	}
	if sequential := time.Duration(n) * delay; elapsed > sequential/4 {
		t.Errorf("ls -l took %v; the HEADs one after the other take %v, in parallel a fraction", elapsed, sequential)
	}

	// Once the listing has expired, it is read again, but the versions it
	// shows are known: no HEAD.
	time.Sleep(ttl)
	st.ResetCalls()
	if got := lsLong(t, m.path("big")); len(got) != n {
		t.Errorf("second ls -l listed %d entries", len(got))
	}
	if calls := callCounts(st); calls["List"] != 5 || len(calls) != 1 {
		t.Errorf("second ls -l after the TTL: requests %v, want the 5 listing pages only", calls)
	}
}

// TestReadDirPlusTypes checks what READDIRPLUS reports for every kind of
// entry, with the kernel keeping it so that lstat shows exactly that.
func TestReadDirPlusTypes(t *testing.T) {
	st := memstore.New(memstore.Options{})
	m := newMount(t, st, kernelCaching)
	m.put(t, "d/file", []byte("12345"), store.Metadata{"mode": "33152", "mtime": "1600000000"})
	m.put(t, "d/plain", []byte("x"), nil)
	m.put(t, "d/link", []byte("file"), store.Metadata{"mode": "41471", "mtime": "1600000001"})
	m.put(t, "d/marked/", nil, store.Metadata{"mode": "16832", "uid": "5", "mtime": "1600000002"})
	m.put(t, "d/implicit/x", []byte("x"), nil)
	m.put(t, "d/shadow", []byte("file wins"), nil)
	m.put(t, "d/shadow/inner", []byte("x"), nil)
	got := lsLong(t, m.path("d"))
	tests := []struct {
		name  string
		mode  uint32
		uid   uint32
		mtime int64 // 0: not checked
		size  int64 // -1: not checked
	}{
		{"file", syscall.S_IFREG | 0o600, 4321, 1600000000, 5},
		{"plain", syscall.S_IFREG | 0o644, 4321, 0, 1},
		{"link", syscall.S_IFLNK | 0o777, 4321, 1600000001, 4},
		{"marked", syscall.S_IFDIR | 0o700, 5, 1600000002, -1},
		{"implicit", syscall.S_IFDIR | 0o755, 4321, 0, -1},
		{"shadow", syscall.S_IFREG | 0o644, 4321, 0, 9},
	}
	if len(got) != len(tests) {
		t.Errorf("listed %d entries, want %d", len(got), len(tests))
	}
	for _, tt := range tests {
		s, ok := got[tt.name]
		switch {
		case !ok:
			t.Errorf("%s not listed", tt.name)
		case s.Mode != tt.mode || s.Uid != tt.uid || (tt.mtime != 0 && s.Mtim.Sec != tt.mtime) || (tt.size >= 0 && s.Size != tt.size):
			t.Errorf("%s: mode %o uid %d mtime %d size %d; want %o %d %d %d", tt.name, s.Mode, s.Uid, s.Mtim.Sec, s.Size, tt.mode, tt.uid, tt.mtime, tt.size)
		}
	}
}

// TestNegativeLookupCached: a missing name costs one HEAD and one listing,
// then nothing for NegativeTTL; a name another client creates meanwhile
// shows once it has passed.
func TestNegativeLookupCached(t *testing.T) {
	const ttl = 500 * time.Millisecond
	m := newMount(t, nil, func(o *Options) { o.NegativeTTL = ttl })
	start := time.Now()
	m.st.ResetCalls()
	for range 3 {
		if _, err := os.Stat(m.path("missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stat of a missing name: %v", err)
		}
	}
	if calls := callCounts(m.st); calls["Stat"] != 1 || calls["List"] != 1 || len(calls) != 2 {
		t.Errorf("three lookups of a missing name: requests %v, want one Stat and one List", calls)
	}
	m.put(t, "missing", []byte("here now"), nil)
	_, err := os.Stat(m.path("missing"))
	if time.Since(start) < ttl && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat within the negative TTL of a name created by another client: %v, want the cached ENOENT", err)
	}
	time.Sleep(ttl)
	if fi, err := os.Stat(m.path("missing")); err != nil || fi.Size() != 8 {
		t.Errorf("stat after the negative TTL: %v, %v", fi, err)
	}
}

// TestBurstOfCreatesFewRequests: creating many files in one directory, as
// cp -r or tar -x do (each name is looked up before it is created), costs
// a PUT per file and a few requests besides, not a HEAD and a LIST per
// file (meta/burst.go). In a directory this mount just made, the lookups
// cost nothing.
func TestBurstOfCreatesFewRequests(t *testing.T) {
	m := newMount(t, nil, kernelCaching, func(o *Options) { o.StatTTL, o.NegativeTTL = time.Minute, time.Minute })
	if err := os.Mkdir(m.path("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.st.ResetCalls()
	for i := range 20 {
		if err := os.WriteFile(m.path(fmt.Sprintf("new/f%03d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if calls := callCounts(m.st); calls["Put"] != 20 || len(calls) != 1 {
		t.Errorf("creating 20 files in a directory made by this mount: requests %v, want 20 Puts alone", calls)
	}
	m.put(t, "d/", nil, nil) // made by another client
	m.st.ResetCalls()
	const files = 100
	for i := range files {
		if err := os.WriteFile(m.path(fmt.Sprintf("d/f%03d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// d itself costs a HEAD of "d", a directory probe and a HEAD of its
	// marker. The first two names are looked up one by one (a HEAD and a
	// directory probe each); the second makes a burst, and one listing of
	// d/ answers the rest.
	calls := callCounts(m.st)
	if calls["Stat"] != 4 || calls["List"] != 4 || calls["Put"] != files {
		t.Errorf("creating %d files: requests %v, want 4 Stats, 4 Lists and %d Puts", files, calls, files)
	}
	page, err := m.st.List(context.Background(), "d/", "/", "", 0)
	if err != nil || len(page.Objects) != files+1 { // and the marker
		t.Fatalf("S3 lists %d objects under d/ (%v), want %d", len(page.Objects), err, files+1)
	}
	// Each name is known at once, whatever the listing said.
	for i := range files {
		if fi, err := os.Stat(m.path(fmt.Sprintf("d/f%03d", i))); err != nil || fi.Size() != 1 {
			t.Fatalf("stat f%03d: %v %v", i, fi, err)
		}
	}
}

// TestOwnChangesSeenAtOnce: whatever the mount remembers, in the kernel
// (entries, attributes, missing names) or here (HEADs, listings, missing
// names), its own changes show at once.
func TestOwnChangesSeenAtOnce(t *testing.T) {
	m := newMount(t, nil, func(o *Options) {
		o.AttrTimeout, o.EntryTimeout, o.NegativeTimeout = time.Minute, time.Minute, time.Minute
		o.StatTTL, o.NegativeTTL = time.Minute, time.Minute
	})
	m.put(t, "old", []byte("old"), nil)
	for _, name := range []string{"new", "dir", "dir/sub", "link", "moved"} {
		if _, err := os.Stat(m.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stat %s: %v", name, err)
		}
	}
	if _, err := os.ReadDir(m.path(".")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.path("old")); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(m.path("new"), []byte("fresh bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("dir/sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("new", m.path("link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("old"), m.path("moved")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(m.path("new")); err != nil || fi.Size() != 11 || fi.Mode() != 0o600 {
		t.Errorf("stat new: %v %v", fi, err)
	}
	if got, err := os.ReadFile(m.path("link")); err != nil || string(got) != "fresh bytes" {
		t.Errorf("read through link: %q %v", got, err)
	}
	if _, err := os.Stat(m.path("old")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of the renamed name: %v", err)
	}
	if got, err := os.ReadFile(m.path("moved")); err != nil || string(got) != "old" {
		t.Errorf("read moved: %q %v", got, err)
	}
	entries, err := os.ReadDir(m.path("."))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"dir", "link", "moved", "new"}; !equalStrings(names, want) { // sorted by os.ReadDir
		t.Errorf("listing after the changes: %q, want %q", names, want)
	}

	// The mount's own deletions, too.
	if err := os.Remove(m.path("new")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("dir/sub")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"new", "dir/sub"} {
		if _, err := os.Stat(m.path(name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %s after removing it: %v", name, err)
		}
	}
	if entries, err := os.ReadDir(m.path("dir")); err != nil || len(entries) != 0 {
		t.Errorf("dir after rmdir of its child: %v %v", entries, err)
	}
}

// TestStatReportsStoredMtime: the mtime stat reports after a write is the
// stored one, also once the metadata cache answers, so that a second
// rsync -a finds nothing to do.
func TestStatReportsStoredMtime(t *testing.T) {
	m := newMount(t, nil, kernelCaching, func(o *Options) { o.StatTTL = time.Minute })
	p := m.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1500000000, 0)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	m2 := newMount(t, m.st, kernelCaching, func(o *Options) { o.StatTTL = time.Minute })
	for _, dir := range []string{m.dir, m2.dir} {
		for range 2 {
			got := lsLong(t, dir)
			if s := got["f"]; s.Mtim.Sec != mtime.Unix() || s.Size != 4 {
				t.Errorf("%s: mtime %d size %d, want %d and 4", dir, s.Mtim.Sec, s.Size, mtime.Unix())
			}
		}
	}
}
