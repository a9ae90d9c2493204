package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadOnlyMount checks that --read-only serves reads and refuses every
// change with EROFS.
func TestReadOnlyMount(t *testing.T) {
	e := newEnv(t)
	want := []byte("stored before the read-only mount\n")
	e.put("dir/file.txt", want)
	m := e.mount(mountConfig{extraArgs: []string{"--read-only"}})
	file := m.path("dir/file.txt")
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read: %q, %v", got, err)
	}
	if opts, _, _ := mountinfoOptions(t, m.dir); !hasOption(opts, "ro") {
		t.Errorf("mount options %s; want ro", opts)
	}
	changes := map[string]func() error{
		"create":         func() error { return os.WriteFile(m.path("new.txt"), []byte("x"), 0o644) },
		"open for write": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); closeIf(f); return err },
		"open O_TRUNC":   func() error { f, err := os.OpenFile(file, os.O_RDWR|os.O_TRUNC, 0); closeIf(f); return err },
		"truncate":       func() error { return os.Truncate(file, 1) },
		"mkdir":          func() error { return os.Mkdir(m.path("newdir"), 0o755) },
		"remove":         func() error { return os.Remove(file) },
		"rmdir":          func() error { return syscall.Rmdir(m.path("dir")) },
		"rename":         func() error { return os.Rename(file, m.path("dir/moved.txt")) },
		"chmod":          func() error { return os.Chmod(file, 0o600) },
		"chown":          func() error { return os.Chown(file, 1, 1) },
		"utimes":         func() error { return os.Chtimes(file, time.Now(), time.Now()) },
		"symlink":        func() error { return os.Symlink("file.txt", m.path("dir/link")) },
		"mknod (mkfifo)": func() error { return syscall.Mkfifo(m.path("fifo"), 0o644) },
		"create excl": func() error {
			f, err := os.OpenFile(m.path("x"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			closeIf(f)
			return err
		},
		"setxattr (user)": func() error { return syscall.Setxattr(file, "user.x", []byte("1"), 0) },
	}
	for name, change := range changes {
		if err := change(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a read-only mount: %v, want EROFS", name, err)
		}
	}
	if got := e.get("dir/file.txt"); !bytes.Equal(got, want) {
		t.Errorf("object changed under a read-only mount: %q", got)
	}
	if ups := e.uploads(); len(ups) != 0 {
		t.Errorf("a read-only mount started %d uploads", len(ups))
	}
}

func closeIf(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// TestAllowOther mounts with --allow-other: other users may use the mount,
// and the kernel enforces the permission bits (default_permissions), so a
// file of mode 0600 stays private to its owner.
func TestAllowOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs commands as another user and needs root")
	}
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: []string{"--allow-other"}})
	_, superOpts, _ := mountinfoOptions(t, m.dir)
	if !hasOption(superOpts, "allow_other") || !hasOption(superOpts, "default_permissions") {
		t.Errorf("super-block options %s; want allow_other and default_permissions", superOpts)
	}
	// Let the other user reach the mountpoint.
	for dir := filepath.Dir(m.dir); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(m.path("public.txt"), []byte("for everyone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("private.txt"), []byte("for root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := asNobody("cat", m.path("public.txt")); err != nil || out != "for everyone" {
		t.Errorf("another user reading a 0644 file: %v %q", err, out)
	}
	if out, err := asNobody("cat", m.path("private.txt")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user reading a 0600 file: %v %q; want Permission denied", err, out)
	}
	if out, err := asNobody("touch", m.path("by-nobody.txt")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user creating a file in a 0755 root-owned directory: %v %q; want Permission denied", err, out)
	}
}
