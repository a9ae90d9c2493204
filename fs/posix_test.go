package fs

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/store/memstore"
)

func lstat(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func timespec(ts syscall.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// TestSpecialFiles makes a FIFO, a socket and two device nodes, and checks
// that they are empty objects with s3fs's metadata, that another mount of
// the same bucket sees their type, mode, owner and device number, and that
// they can be changed, renamed and removed like files.
func TestSpecialFiles(t *testing.T) {
	st := memstore.New(memstore.Options{})
	m := newMount(t, st)
	if err := syscall.Mkfifo(m.path("fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	chr, blk := int(unix.Mkdev(1, 3)), int(unix.Mkdev(8, 17))
	if err := syscall.Mknod(m.path("chr"), syscall.S_IFCHR|0o640, chr); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(m.path("blk"), syscall.S_IFBLK|0o600, blk); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: m.path("sock")}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(m.path("fifo"), 1001, 1002); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		mode     uint32
		rdev     uint64
		uid, gid uint32
	}{
		{"fifo", syscall.S_IFIFO | 0o640, 0, 1001, 1002},
		{"chr", syscall.S_IFCHR | 0o640, uint64(chr), 0, 0},
		{"blk", syscall.S_IFBLK | 0o600, uint64(blk), 0, 0},
		{"sock", syscall.S_IFSOCK, 0, 0, 0}, // bind's mode: 0777 less the umask
	}
	check := func(t *testing.T, m *testMount) {
		for _, tt := range tests {
			got := lstat(t, m.path(tt.name))
			want := tt.mode
			if tt.name == "sock" {
				want = got.Mode&0o777 | syscall.S_IFSOCK
			}
			if got.Mode != want || got.Rdev != tt.rdev || got.Size != 0 {
				t.Errorf("%s: mode %o rdev %#x size %d, want %o %#x 0", tt.name, got.Mode, got.Rdev, got.Size, want, tt.rdev)
			}
			if tt.uid != 0 && (got.Uid != tt.uid || got.Gid != tt.gid) {
				t.Errorf("%s: owner %d:%d, want %d:%d", tt.name, got.Uid, got.Gid, tt.uid, tt.gid)
			}
			md := m.metadata(t, tt.name)
			if md["mode"] != strconv.FormatUint(uint64(got.Mode), 10) {
				t.Errorf("%s: x-amz-meta-mode %q, want %d", tt.name, md["mode"], got.Mode)
			}
			if wantRdev := strconv.FormatUint(tt.rdev, 10); (tt.rdev != 0 && md["rdev"] != wantRdev) || (tt.rdev == 0 && md["rdev"] != "") {
				t.Errorf("%s: x-amz-meta-rdev %q, want %q", tt.name, md["rdev"], wantRdev)
			}
			if body := m.object(t, tt.name); len(body) != 0 {
				t.Errorf("%s: object of %d bytes, want empty", tt.name, len(body))
			}
		}
	}
	check(t, m)
	// Another mount of the bucket, as after a remount.
	m2 := newMount(t, st)
	check(t, m2)
	entries, err := os.ReadDir(m2.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(tests) {
		t.Errorf("readdir: %d entries, want %d", len(entries), len(tests))
	}

	if err := os.Chmod(m2.path("fifo"), 0o604); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m2.path("fifo"), m2.path("fifo2")); err != nil {
		t.Fatal(err)
	}
	if got := lstat(t, m2.path("fifo2")); got.Mode != syscall.S_IFIFO|0o604 || got.Uid != 1001 {
		t.Errorf("renamed fifo: mode %o uid %d, want %o 1001", got.Mode, got.Uid, syscall.S_IFIFO|0o604)
	}
	m2.syncDir(t, ".")
	m2.absent(t, "fifo")
	for _, name := range []string{"fifo2", "chr", "blk", "sock"} {
		if err := os.Remove(m2.path(name)); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
		m2.absent(t, name)
	}
}

// TestSymlinkOntoExistingName: symlink(2) onto any existing name fails with
// EEXIST and leaves what is there untouched.
func TestSymlinkOntoExistingName(t *testing.T) {
	m := newMount(t, nil)
	if err := os.WriteFile(m.path("file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(m.path("fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", m.path("link")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"file", "fifo", "dir", "link"} {
		err := os.Symlink("target", m.path(name))
		wantErrno(t, "symlink onto "+name, err, syscall.EEXIST)
	}
	if body := m.object(t, "file"); string(body) != "data" {
		t.Errorf("file holds %q after the refused symlink", body)
	}
}

// TestTimes checks atime apart from mtime, nanoseconds, UTIME_OMIT and
// UTIME_NOW, that both are stored and read back by another mount, and that
// the ctime follows changes (status and contents) whatever times are set.
func TestTimes(t *testing.T) {
	st := memstore.New(memstore.Options{})
	m := newMount(t, st)
	p := m.path("f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	atime, mtime := time.Unix(100000000, 100000000), time.Unix(200000000, 200000000)
	before := time.Now().Truncate(time.Second)
	if err := os.Chtimes(p, atime, mtime); err != nil {
		t.Fatal(err)
	}
	s := lstat(t, p)
	if !timespec(s.Atim).Equal(atime) || !timespec(s.Mtim).Equal(mtime) {
		t.Errorf("after utimes: atime %v mtime %v, want %v %v", timespec(s.Atim), timespec(s.Mtim), atime, mtime)
	}
	if c := timespec(s.Ctim); c.Before(before) {
		t.Errorf("ctime %v after utimes at %v: want the time of the change", c, before)
	}
	m.syncDir(t, ".")
	md := m.metadata(t, "f")
	if md["atime"] != "100000000.100000000" || md["mtime"] != "200000000.200000000" {
		t.Errorf("stored atime %q mtime %q", md["atime"], md["mtime"])
	}

	// UTIME_OMIT keeps one, UTIME_NOW sets the other to the present.
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0); err != nil {
		t.Fatal(err)
	}
	s = lstat(t, p)
	if !timespec(s.Atim).Equal(atime) || timespec(s.Mtim).Before(before) {
		t.Errorf("after UTIME_OMIT, UTIME_NOW: atime %v mtime %v, want %v and now", timespec(s.Atim), timespec(s.Mtim), atime)
	}

	m.syncDir(t, ".")
	m2 := newMount(t, st)
	s2 := lstat(t, m2.path("f"))
	if s2.Atim != s.Atim || s2.Mtim != s.Mtim {
		t.Errorf("another mount: atime %v mtime %v, want %v %v", timespec(s2.Atim), timespec(s2.Mtim), timespec(s.Atim), timespec(s.Mtim))
	}

	// chmod changes the ctime only; a write changes mtime and ctime.
	if err := os.Chtimes(p, atime, mtime); err != nil {
		t.Fatal(err)
	}
	before = time.Now().Truncate(time.Second)
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	s = lstat(t, p)
	if timespec(s.Ctim).Before(before) || !timespec(s.Mtim).Equal(mtime) {
		t.Errorf("after chmod: ctime %v mtime %v, want now and %v", timespec(s.Ctim), timespec(s.Mtim), mtime)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s = lstat(t, p)
	if timespec(s.Mtim).Before(before) || timespec(s.Ctim).Before(before) || !timespec(s.Atim).Equal(atime) {
		t.Errorf("after O_TRUNC: mtime %v ctime %v atime %v, want now, now, %v", timespec(s.Mtim), timespec(s.Ctim), timespec(s.Atim), atime)
	}
}

// TestDirectoryTimesFollowEntries: creating and removing entries changes
// the directory's mtime and ctime.
func TestDirectoryTimesFollowEntries(t *testing.T) {
	m := newMount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(100000000, 0)
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(m.path("d/f"), nil, 0o644) }},
		{"mkfifo", func() error { return syscall.Mkfifo(m.path("d/p"), 0o644) }},
		{"rename", func() error { return os.Rename(m.path("d/p"), m.path("d/q")) }},
		{"unlink", func() error { return os.Remove(m.path("d/f")) }},
	} {
		if err := os.Chtimes(m.path("d"), old, old); err != nil {
			t.Fatal(err)
		}
		before := time.Now().Truncate(time.Second)
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		s := lstat(t, m.path("d"))
		if timespec(s.Mtim).Before(before) || timespec(s.Ctim).Before(before) {
			t.Errorf("after %s: directory mtime %v ctime %v, want at least %v", step.what, timespec(s.Mtim), timespec(s.Ctim), before)
		}
	}
}

// TestUnlinkedOpenFileHasNoLinks: fstat of a descriptor whose file was
// unlinked reports st_nlink 0.
func TestUnlinkedOpenFileHasNoLinks(t *testing.T) {
	m := newMount(t, nil)
	if err := os.WriteFile(m.path("f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(m.path("f")); err != nil {
		t.Fatal(err)
	}
	var s syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &s); err != nil {
		t.Fatal(err)
	}
	if s.Nlink != 0 {
		t.Errorf("st_nlink %d after unlink, want 0", s.Nlink)
	}
}

// TestNameTooLong: a name up to 255 bytes works; a longer one, or a key
// past S3's 1,024 bytes, fails with ENAMETOOLONG and stores nothing.
func TestNameTooLong(t *testing.T) {
	m := newMount(t, nil)
	name255 := strings.Repeat("n", 255)
	if err := os.WriteFile(m.path(name255), []byte("x"), 0o644); err != nil {
		t.Fatalf("a 255-byte name: %v", err)
	}
	m.object(t, name255)
	err := os.WriteFile(m.path(name255+"x"), []byte("x"), 0o644)
	wantErrno(t, "a 256-byte name", err, syscall.ENAMETOOLONG)

	// Four directories of 250 bytes make a 1,004-byte prefix; a name of 20
	// bytes fits in 1,024, one of 21 does not, nor a directory of 20 (its
	// marker ends in "/").
	dir := ""
	for range 4 {
		dir += strings.Repeat("d", 249) + "/"
		if err := os.Mkdir(m.path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if len(dir) != 1000 {
		t.Fatalf("prefix of %d bytes", len(dir))
	}
	fits := dir + strings.Repeat("f", 24)
	if err := os.WriteFile(m.path(fits), []byte("x"), 0o644); err != nil {
		t.Fatalf("a 1,024-byte key: %v", err)
	}
	m.object(t, fits)
	for what, do := range map[string]func(string) error{
		"create":  func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"mkdir":   func(p string) error { return os.Mkdir(p, 0o755) },
		"mkfifo":  func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"symlink": func(p string) error { return os.Symlink("t", p) },
		"rename":  func(p string) error { return os.Rename(m.path(fits), p) },
	} {
		name := dir + strings.Repeat("g", 25)
		if what == "mkdir" {
			name = dir + strings.Repeat("g", 24)
		}
		err := do(m.path(name))
		if !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("%s of a %d-byte key: %v, want ENAMETOOLONG", what, len(name), err)
		}
		for key := range m.st.Objects() {
			if strings.HasPrefix(key, dir+"g") {
				t.Errorf("%s stored %d-byte key", what, len(key))
			}
		}
	}
	m.object(t, fits)
}

// TestSetGroupIDDirectory: entries made in a set-group-ID directory take
// its group, and subdirectories the bit as well.
func TestSetGroupIDDirectory(t *testing.T) {
	m := newMount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(m.path("d"), -1, 4242); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(m.path("d"), 0o2755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("d/f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if s := lstat(t, m.path("d/f")); s.Gid != 4242 {
		t.Errorf("file in a set-group-ID directory: group %d, want 4242", s.Gid)
	}
	if s := lstat(t, m.path("d/sub")); s.Gid != 4242 || s.Mode&syscall.S_ISGID == 0 {
		t.Errorf("subdirectory: group %d mode %o, want 4242 with set-group-ID", s.Gid, s.Mode)
	}
}
