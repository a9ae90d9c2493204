package fs

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/store"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestAttributesOfStoredObject(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "f", []byte("data"), store.Metadata{"other": "kept"})
	p := m.path("f")
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1001, 1002); err != nil {
		t.Fatal(err)
	}
	mtime := mustTime(t, "2001-02-03T04:05:06Z") // touch -d
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if n := len(m.st.CallsTo("Copy")); n != 0 {
		t.Errorf("%d copies before fsync; metadata changes wait for a durability point", n)
	}
	m.syncDir(t, ".")
	if n := len(m.st.CallsTo("Copy")); n != 1 {
		t.Errorf("chmod, chown and utimes cost %d copies, want 1", n)
	}
	want := store.Metadata{"mode": "33184", "uid": "1001", "gid": "1002", "mtime": strconv.FormatInt(mtime.Unix(), 10), "other": "kept"}
	got := m.metadata(t, "f")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metadata[%q] = %q, want %q", k, got[k], v)
		}
	}
	m.wantObject(t, "f", []byte("data"))
	for _, c := range m.st.CallsTo("Copy") {
		if c.Src != "f" || c.Key != "f" {
			t.Errorf("copy %+v, want f onto itself", c.Op)
		}
	}

	m2 := newMount(t, m.st) // as after a remount
	fi, err := os.Stat(m2.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != 0o640 || st.Uid != 1001 || st.Gid != 1002 || !fi.ModTime().Equal(mtime) {
		t.Errorf("after remount: mode %v uid %d gid %d mtime %v", fi.Mode(), st.Uid, st.Gid, fi.ModTime())
	}
}

// fchmod on a descriptor whose data is already durable stores the mode at
// the next fsync, and later writes go on from the object it produced.
func TestChmodSyncedOpenFile(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("first,"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if md := m.metadata(t, "f"); md["mode"] != "33152" {
		t.Errorf("mode after fchmod and fsync: %v", md)
	}
	if _, err := f.WriteString("second"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.wantObject(t, "f", []byte("first,second"))
	if md := m.metadata(t, "f"); md["mode"] != "33152" {
		t.Errorf("mode after close: %v", md)
	}
}

func TestSymlink(t *testing.T) {
	m := newMount(t, nil)
	ln := m.path("ln")
	const target = "some dir/target file"
	if err := os.Symlink(target, ln); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(ln); err != nil || got != target {
		t.Fatalf("readlink: %q %v", got, err)
	}
	fi, err := os.Lstat(ln)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 || fi.Size() != int64(len(target)) {
		t.Fatalf("lstat: %v %v", fi, err)
	}
	m.wantObject(t, "ln", []byte(target))
	if md := m.metadata(t, "ln"); md["mode"] != "41471" { // S_IFLNK|0777, as s3fs
		t.Errorf("metadata: %v", md)
	}

	// lchown and utimensat(AT_SYMLINK_NOFOLLOW), as cp -a and rsync -a use.
	if err := unix.Lchown(ln, 55, 66); err != nil {
		t.Fatal(err)
	}
	mtime := mustTime(t, "2010-01-01T00:00:00Z")
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, ln, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	if md := m.metadata(t, "ln"); md["uid"] != "55" || md["gid"] != "66" || md["mtime"] != strconv.FormatInt(mtime.Unix(), 10) || md["mode"] != "41471" {
		t.Errorf("metadata after lchown and lutimes: %v", md)
	}

	// A link written by s3fs, and links after a remount and a rename.
	m.put(t, "s3fs-link", []byte("../elsewhere"), store.Metadata{"mode": "41471"})
	if err := os.Rename(ln, m.path("ln2")); err != nil {
		t.Fatal(err)
	}
	m2 := newMount(t, m.st)
	for name, want := range map[string]string{"ln2": target, "s3fs-link": "../elsewhere"} {
		if got, err := os.Readlink(m2.path(name)); err != nil || got != want {
			t.Errorf("readlink %s after remount: %q %v", name, got, err)
		}
	}
	fi, err = os.Lstat(m2.path("ln2"))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 || !fi.ModTime().Equal(mtime) || fi.Sys().(*syscall.Stat_t).Uid != 55 {
		t.Errorf("lstat after remount: %v %v", fi, err)
	}
	entries, err := os.ReadDir(m2.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			t.Errorf("readdir: %s has type %v, want a link (looked up before)", e.Name(), e.Type())
		}
	}
}

func TestHardLinkRefused(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "f", []byte("x"), nil)
	wantErrno(t, "link", os.Link(m.path("f"), m.path("g")), syscall.EPERM)
	m.absent(t, "g")
}

// Extended attributes answer ENOTSUP, which cp -a and rsync -a take as "this
// file system has none" and pass over silently.
func TestXattrNotSupported(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "f", []byte("x"), nil)
	p := m.path("f")
	buf := make([]byte, 256)
	_, err := unix.Getxattr(p, "user.test", buf)
	wantErrno(t, "getxattr", err, unix.ENOTSUP)
	wantErrno(t, "setxattr", unix.Setxattr(p, "user.test", []byte("v"), 0), unix.ENOTSUP)
	_, err = unix.Listxattr(p, buf)
	wantErrno(t, "listxattr", err, unix.ENOTSUP)
	wantErrno(t, "removexattr", unix.Removexattr(p, "user.test"), unix.ENOTSUP)
}

func TestOddNames(t *testing.T) {
	m := newMount(t, nil)
	names := []string{"with space", "ünïcødé ✓ 日本", "100%", "a+b", "what?", "#hash", "mix %20+?#&=;'\""}
	if err := os.Mkdir(m.path("dir %+?#"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := os.WriteFile(m.path(name), []byte(name), 0o644); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		m.wantObject(t, name, []byte(name))
		moved := "dir %+?#/" + name + " #2"
		if err := os.Rename(m.path(name), m.path(moved)); err != nil {
			t.Fatalf("rename %q: %v", name, err)
		}
		m.wantObject(t, moved, []byte(name))
		if got, err := os.ReadFile(m.path(moved)); err != nil || string(got) != name {
			t.Errorf("read %q: %q %v", moved, got, err)
		}
	}
	entries, err := os.ReadDir(m.path("dir %+?#"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for _, name := range names {
		if !slices.Contains(got, name+" #2") {
			t.Errorf("readdir %q: no %q", got, name+" #2")
		}
	}
}
