package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
)

// helperDir is where mount(8) looks for mount.TYPE helpers (libmount's
// search path starts with /sbin; PATH is not used).
const helperDir = "/sbin"

// installMountHelper links mount.fuse.SUBTYPE in helperDir to the partfs
// build under test and returns the file system type to give mount(8):
// fuse.partfs, or fuse.partfs-test-PID when an installed partfs already
// owns mount.fuse.partfs.
func installMountHelper(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("mounting through mount(8) needs root, to install the helper %s/mount.fuse.partfs", helperDir)
	}
	bin := partfsBinary(t, true)
	subtype := "partfs"
	link := filepath.Join(helperDir, "mount.fuse."+subtype)
	if _, err := os.Lstat(link); err == nil {
		subtype = fmt.Sprintf("partfs-test-%d", os.Getpid())
		link = filepath.Join(helperDir, "mount.fuse."+subtype)
	}
	if err := os.Symlink(bin, link); err != nil {
		t.Fatalf("install the mount helper: %v", err)
	}
	t.Cleanup(func() { os.Remove(link) })
	return "fuse." + subtype
}

// TestFstab mounts through mount(8), from the command line and from an
// fstab line, with mount options in place of flags, and unmounts with
// umount(8), which must end the partfs process.
func TestFstab(t *testing.T) {
	e := newEnv(t)
	fstype := installMountHelper(t)
	// An object without stored ownership shows the uid option's owner.
	e.put("data/plain.txt", []byte("stored by another tool\n"))
	options := strings.Join([]string{
		"rw", "_netdev", "nofail", "noauto", "x-systemd.automount", "defaults",
		"endpoint=" + e.proxy.URL(), "region=" + miniotest.Region,
		"uid=4321", "gid=4322", "allow_other", "part_size=8MiB", "write_buffer=64MiB",
	}, ",")
	source := e.bucket + ":data"

	tests := []struct {
		name  string
		mount func(dir string) (string, error)
	}{
		{"mount -t", func(dir string) (string, error) {
			return runEnv(t, partfsEnv(e.srv.AccessKey, e.srv.SecretKey), "mount", "-t", fstype, source, dir, "-o", options)
		}},
		{"fstab", func(dir string) (string, error) {
			fstab := filepath.Join(t.TempDir(), "fstab")
			line := fmt.Sprintf("# partfs\n%s %s %s %s 0 0\n", source, dir, fstype, options)
			if err := os.WriteFile(fstab, []byte(line), 0o644); err != nil {
				t.Fatal(err)
			}
			return runEnv(t, partfsEnv(e.srv.AccessKey, e.srv.SecretKey), "mount", "--fstab", fstab, dir)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := tt.mount(dir)
			pid := daemonPID(partfsBinary(t, true), dir)
			t.Cleanup(func() {
				if mounted(dir) {
					stopDaemon(t, pid, dir)
				}
			})
			if err != nil {
				t.Fatalf("mount: %v\n%s", err, out)
			}
			if !mounted(dir) || pid == 0 {
				t.Fatalf("mount returned, but %s is not mounted (pid %d): %s", dir, pid, out)
			}
			_, superOpts, gotType := mountinfoOptions(t, dir)
			if gotType != "fuse.partfs" || !hasOption(superOpts, "allow_other") || !hasOption(superOpts, "default_permissions") {
				t.Errorf("mounted as type %s with %s; want fuse.partfs with allow_other,default_permissions", gotType, superOpts)
			}
			fi, err := os.Stat(filepath.Join(dir, "plain.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4321 || st.Gid != 4322 {
				t.Errorf("owner %d:%d, want the uid and gid options, 4321:4322", st.Uid, st.Gid)
			}
			name := strings.ReplaceAll(t.Name(), "/", "-") + ".txt"
			want := []byte("written through an fstab mount\n")
			if err := os.WriteFile(filepath.Join(dir, name), want, 0o644); err != nil {
				t.Fatalf("write: %v", err)
			}
			if got := e.get("data/" + name); !bytes.Equal(got, want) {
				t.Errorf("object = %q, want %q", got, want)
			}

			if out, err := runEnv(t, nil, "umount", dir); err != nil {
				t.Fatalf("umount: %v %s", err, out)
			}
			deadline := time.Now().Add(stopTimeout)
			for processAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if processAlive(pid) {
				t.Errorf("partfs (pid %d) still running %v after umount", pid, stopTimeout)
			}
			if mounted(dir) {
				t.Errorf("%s still mounted after umount", dir)
			}
		})
	}

	t.Run("fake", func(t *testing.T) {
		dir := t.TempDir()
		// mount -f checks without mounting; the helper is given -f.
		out, err := runEnv(t, partfsEnv(e.srv.AccessKey, e.srv.SecretKey),
			filepath.Join(helperDir, "mount."+fstype), source, dir, "-f", "-o", options)
		if err != nil || mounted(dir) {
			t.Errorf("mount helper -f: %v, mounted %v: %s", err, mounted(dir), out)
		}
		out, err = runEnv(t, partfsEnv(e.srv.AccessKey, e.srv.SecretKey),
			filepath.Join(helperDir, "mount."+fstype), source, dir, "-o", "rw,no_such_option")
		if err == nil || !strings.Contains(out, "no_such_option") {
			t.Errorf("an unknown option was accepted: %v: %s", err, out)
		}
	})
}

// runEnv runs a command with the given environment (nil: the test's) and
// returns its combined output.
func runEnv(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
