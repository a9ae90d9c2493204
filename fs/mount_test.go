package fs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/cache"
	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
	"github.com/partfs/partfs/writeback"
)

// testMount is a live kernel mount of a Root over a memstore.
type testMount struct {
	dir   string
	root  *Root
	st    *memstore.Store
	cache *cache.Cache
}

// mountOpts adjusts the Options of a test mount.
type mountOpts func(*Options)

// newMount mounts a fresh memstore (or st, when given) for the test and
// unmounts it when the test ends. The test process does its file I/O on its
// own mount, which go-fuse allows as long as it does not fork meanwhile.
func newMount(t *testing.T, st *memstore.Store, adjust ...mountOpts) *testMount {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("FUSE is not available (%v): these tests mount for real; run them where /dev/fuse exists (modprobe fuse, or docker --device /dev/fuse --cap-add SYS_ADMIN)", err)
	}
	if st == nil {
		st = memstore.New(memstore.Options{})
	}
	w, err := writeback.New(st, writeback.Options{PartSize: store.MinPartSize, BufferBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(st, cache.Options{MaxBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Store:  st,
		Writer: w,
		Cache:  c,
		UID:    4321,
		GID:    8765,
		// No caching, in the kernel or here: each test step must reach S3.
		AttrTimeout:     -1,
		EntryTimeout:    -1,
		NegativeTimeout: -1,
		StatTTL:         -1,
		NegativeTTL:     -1,
	}
	for _, f := range adjust {
		f(&opts)
	}
	if opts.FastClose && opts.Writer == w {
		// As partfs sets it up: a failed background upload keeps its bytes.
		if opts.Writer, err = writeback.New(st, writeback.Options{PartSize: store.MinPartSize, BufferBytes: 64 << 20, KeepUnsent: true}); err != nil {
			t.Fatal(err)
		}
	}
	root, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	server, err := Mount(dir, root, MountOptions{FsName: "partfs:test", DirectMount: DirectMountAvailable()})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		server.Wait()
		c.Close()
	})
	return &testMount{dir: dir, root: root, st: st, cache: c}
}

func (m *testMount) path(name string) string { return filepath.Join(m.dir, name) }

// put stores an object directly, as another S3 client would.
func (m *testMount) put(t *testing.T, key string, body []byte, md store.Metadata) store.Object {
	t.Helper()
	obj, err := m.st.Put(context.Background(), key, body, store.Sum(body), store.PutOptions{Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// object returns a stored object's body, or fails the test.
func (m *testMount) object(t *testing.T, key string) []byte {
	t.Helper()
	body, ok := m.st.Objects()[key]
	if !ok {
		t.Fatalf("object %q does not exist", key)
	}
	return body
}

// syncDir fsyncs the directory name of the mount ("." for its root): the
// durability point of pending metadata changes and of renames' deletes.
func (m *testMount) syncDir(t *testing.T, name string) {
	t.Helper()
	d, err := os.Open(m.path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync of directory %s: %v", name, err)
	}
}

func (m *testMount) absent(t *testing.T, key string) {
	t.Helper()
	if _, ok := m.st.Objects()[key]; ok {
		t.Fatalf("object %q exists, want none", key)
	}
}

func wantErrno(t *testing.T, what string, err error, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func TestStatMetadata(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "meta.txt", []byte("hello"), store.Metadata{"mode": "33152", "uid": "1234", "gid": "5678", "mtime": "1700000000"})
	m.put(t, "rclone.txt", []byte("x"), store.Metadata{"mtime": "1700000001.123456789"})
	plain := m.put(t, "plain.txt", []byte("plain!"), nil)

	tests := []struct {
		name     string
		size     int64
		perm     fs.FileMode
		uid, gid uint32
		mtime    time.Time
	}{
		{"meta.txt", 5, 0o600, 1234, 5678, time.Unix(1700000000, 0)},
		{"rclone.txt", 1, 0o644, 4321, 8765, time.Unix(1700000001, 123456789)},
		{"plain.txt", 6, 0o644, 4321, 8765, plain.LastModified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(m.path(tt.name))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Size() != tt.size || fi.Mode() != tt.perm || st.Uid != tt.uid || st.Gid != tt.gid || !fi.ModTime().Equal(tt.mtime) {
				t.Errorf("got size %d mode %v uid %d gid %d mtime %v; want %d %v %d %d %v",
					fi.Size(), fi.Mode(), st.Uid, st.Gid, fi.ModTime(), tt.size, tt.perm, tt.uid, tt.gid, tt.mtime)
			}
		})
	}
	if _, err := os.Stat(m.path("missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing name: %v, want ENOENT", err)
	}
}

func TestReaddir(t *testing.T) {
	m := newMount(t, nil)
	for _, key := range []string{
		"a", "b.txt", "dir/x", "dir/y/z", "marker/", "weird//x", "shadow", "shadow/inner",
		"dots/./x", "dots/../y",
	} {
		m.put(t, key, []byte(key), nil)
	}
	tests := []struct {
		dir  string
		want []string // name, with "/" for directories
	}{
		{".", []string{"a", "b.txt", "dir/", "dots/", "marker/", "shadow", "weird/"}},
		{"dir", []string{"x", "y/"}},
		{"marker", nil},
		{"weird", nil}, // "weird//x" has an empty segment
		{"dots", nil},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			entries, err := os.ReadDir(m.path(tt.dir))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				name := e.Name()
				if e.IsDir() {
					name += "/"
				}
				got = append(got, name)
			}
			if !equalStrings(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	// The file wins over the prefix of the same name.
	if fi, err := os.Stat(m.path("shadow")); err != nil || fi.IsDir() {
		t.Errorf("shadow: %v, %v; want a file", fi, err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReaddirManyPages(t *testing.T) {
	m := newMount(t, nil)
	const n = 10000 // ten pages of memstore's 1,000 keys
	want := make(map[string]bool, n)
	for i := range n {
		name := "f" + strconv.Itoa(i)
		want[name] = true
		if _, err := m.st.Put(context.Background(), "big/"+name, nil, store.Sum(nil), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("got %d entries, want %d", len(entries), n)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Fatalf("unexpected entry %q", e.Name())
		}
		delete(want, e.Name())
	}
}

func TestImplicitDirs(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "imp/sub/file", []byte("deep"), nil)
	for _, dir := range []string{"imp", "imp/sub"} {
		fi, err := os.Stat(m.path(dir))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want a directory 0755", dir, fi.Mode())
		}
	}
	got, err := os.ReadFile(m.path("imp/sub/file"))
	if err != nil || string(got) != "deep" {
		t.Fatalf("read: %q, %v", got, err)
	}
	wantErrno(t, "rmdir of an implicit directory with content", os.Remove(m.path("imp")), syscall.ENOTEMPTY)
}

func TestMkdirRmdir(t *testing.T) {
	m := newMount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o750); err != nil {
		t.Fatal(err)
	}
	marker, err := m.st.Stat(context.Background(), "d/")
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	if marker.Size != 0 || marker.Metadata["mode"] != "16872" { // S_IFDIR|0750
		t.Errorf("marker: size %d metadata %v", marker.Size, marker.Metadata)
	}
	if fi, err := os.Stat(m.path("d")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("stat d: %v %v", fi, err)
	}
	if err := os.Mkdir(m.path("d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rmdir of a directory holding a directory", os.Remove(m.path("d")), syscall.ENOTEMPTY)
	if err := os.Remove(m.path("d/e")); err != nil {
		t.Fatal(err)
	}
	m.put(t, "d/file", []byte("x"), nil)
	wantErrno(t, "rmdir of a directory holding a file", os.Remove(m.path("d")), syscall.ENOTEMPTY)
	if err := os.Remove(m.path("d/file")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("d")); err != nil {
		t.Fatal(err)
	}
	m.absent(t, "d/")
	if _, err := os.Stat(m.path("d")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat after rmdir: %v", err)
	}
}

func TestChmodDirIsStored(t *testing.T) {
	m := newMount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.st.ResetCalls()
	if err := os.Chmod(m.path("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1600000000, 0)
	if err := os.Chtimes(m.path("d"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(m.path("d")); err != nil || fi.Mode().Perm() != 0o700 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("stat after chmod and utimes: %v %v", fi, err)
	}
	m.syncDir(t, "d")
	marker, err := m.st.Stat(context.Background(), "d/")
	if err != nil || marker.Metadata["mode"] != "16832" || marker.Metadata["mtime"] != "1600000000" { // S_IFDIR|0700
		t.Fatalf("marker after chmod, utimes and fsync: %v %v", marker.Metadata, err)
	}
	if puts := m.st.CallsTo("Put"); len(puts) != 1 {
		t.Errorf("chmod and utimes of a directory cost %d marker writes, want 1", len(puts))
	}
	// A removed directory's pending change is dropped, not written.
	if err := os.Chmod(m.path("d"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("d")); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	if _, err := m.st.Stat(context.Background(), "d/"); err == nil {
		t.Error("the marker of a removed directory was written again")
	}
}

func TestUnlink(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "gone", []byte("bye"), nil)
	if err := os.Remove(m.path("gone")); err != nil {
		t.Fatal(err)
	}
	m.absent(t, "gone")
	if _, err := os.Stat(m.path("gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat after unlink: %v", err)
	}
}

func TestStatfs(t *testing.T) {
	m := newMount(t, nil)
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bsize != 4096 || st.Blocks == 0 || st.Bavail == 0 || st.Namelen != 255 {
		t.Errorf("statfs: %+v", st)
	}
}

func TestReadExisting(t *testing.T) {
	m := newMount(t, nil)
	body := testkit.RandomBytes(1, 3<<20+17)
	m.put(t, "big.bin", body, nil)
	got, err := os.ReadFile(m.path("big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, not the %d stored", len(got), len(body))
	}
	f, err := os.Open(m.path("big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1000)
	for _, off := range []int64{0, 1 << 20, 3<<20 + 10} {
		n, err := f.ReadAt(buf, off)
		want := body[off:min(off+1000, int64(len(body)))]
		if !bytes.Equal(buf[:n], want) || (err != nil && n == len(buf)) {
			t.Errorf("ReadAt %d: %d bytes, %v", off, n, err)
		}
	}
}

func TestReadSeesReplacedObject(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "r", []byte("first version"), nil)
	if got, err := os.ReadFile(m.path("r")); err != nil || string(got) != "first version" {
		t.Fatalf("first read: %q %v", got, err)
	}
	m.put(t, "r", []byte("second, longer version"), nil)
	if got, err := os.ReadFile(m.path("r")); err != nil || string(got) != "second, longer version" {
		t.Fatalf("read after replace: %q %v", got, err)
	}
}

func TestReadOnly(t *testing.T) {
	m := newMount(t, nil, func(o *Options) { o.ReadOnly = true; o.Writer = nil })
	m.put(t, "f", []byte("data"), nil)
	m.put(t, "d/", nil, nil)
	checks := []struct {
		what string
		err  error
	}{
		{"create", os.WriteFile(m.path("new"), []byte("x"), 0o644)},
		{"open for writing", openErr(os.OpenFile(m.path("f"), os.O_WRONLY, 0))},
		{"truncate", os.Truncate(m.path("f"), 0)},
		{"mkdir", os.Mkdir(m.path("nd"), 0o755)},
		{"rmdir", os.Remove(m.path("d"))},
		{"unlink", os.Remove(m.path("f"))},
		{"chmod", os.Chmod(m.path("f"), 0o600)},
		{"rename", os.Rename(m.path("f"), m.path("g"))},
	}
	for _, c := range checks {
		wantErrno(t, c.what, c.err, syscall.EROFS)
	}
	if got, err := os.ReadFile(m.path("f")); err != nil || string(got) != "data" {
		t.Errorf("read: %q %v", got, err)
	}
}

func openErr(f *os.File, err error) error {
	if f != nil {
		f.Close()
	}
	return err
}
