package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// smallTree writes files small files of size bytes in dirs directories
// under a new temporary directory, with modes 0644, 0600 and 0755 and
// mtimes a few hours apart, and returns its path.
func smallTree(t testing.TB, dirs, files, size int) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range files {
		path := filepath.Join(src, fmt.Sprintf("d%02d", i%dirs), fmt.Sprintf("file-%04d.txt", i))
		mode := os.FileMode(0o644)
		switch {
		case i%7 == 0:
			mode = 0o600
		case i%11 == 0:
			mode = 0o755
		}
		if err := os.WriteFile(path, testkit.RandomBytes(uint64(i), size), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		mtime := treeBase.Add(time.Duration(i) * 3607 * time.Second)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// requestSplit counts the recorded requests by operation, separately for
// those that began before end (the application's path) and after it (in
// the background).
type requestSplit struct {
	path, background map[string]int
}

func splitRequests(reqs []s3proxy.Request, end time.Time) requestSplit {
	s := requestSplit{path: map[string]int{}, background: map[string]int{}}
	for _, r := range reqs {
		if r.Start.Before(end) {
			s.path[r.Op]++
		} else {
			s.background[r.Op]++
		}
	}
	return s
}

// TestRsyncRequests counts the requests an rsync -a of new small files
// costs through a mount in the default (durable) mode: per file at most a
// PutObject and a CopyObject while rsync runs, at most a DeleteObject
// after, and only a bounded few lookups per directory. A second rsync -a
// transfers nothing, and a fresh mount shows the same bytes, modes and
// mtimes.
func TestRsyncRequests(t *testing.T) { testRsyncRequests(t, false) }

// TestFastCloseRsyncRequests is TestRsyncRequests with --fast-close: one
// PutObject per file, under its final name, and nothing else per file.
func TestFastCloseRsyncRequests(t *testing.T) { testRsyncRequests(t, true) }

func testRsyncRequests(t *testing.T, fast bool) {
	requireTools(t, "rsync", "diff")
	const dirs, files = 4, 200
	src := smallTree(t, dirs, files, 3000)
	e := newEnv(t)
	cfg := mountConfig{}
	if fast {
		// Generous: on a loaded machine rsync may take long between a
		// close and the rename that follows it.
		cfg.extraArgs = []string{"--fast-close", "--upload-delay", "5s"}
	}
	m := e.mount(cfg)
	e.settle()
	e.proxy.Reset()

	start := time.Now()
	if n := rsyncStats(t, src, m.path("tree")); n != files {
		t.Errorf("rsync -a transferred %d files, want %d", n, files)
	}
	end := time.Now()
	if err := fsyncDir(m.path("tree")); err != nil {
		t.Errorf("fsync of the tree: %v", err)
	}
	synced := time.Since(start)
	if t.Failed() {
		t.Fatalf("partfs log:\n%s", m.logTail())
	}
	e.settle()
	reqs := e.proxy.Requests()
	s := splitRequests(reqs, end)
	elapsed := end.Sub(start)
	t.Logf("rsync -a of %d files in %d directories: %v, durable after %v", files, dirs, elapsed.Round(time.Millisecond), synced.Round(time.Millisecond))
	t.Logf("requests per file in rsync's path: %s", opsPerFile(s.path, files))
	t.Logf("requests per file after rsync returned: %s", opsPerFile(s.background, files))
	byOp := map[string]int{}
	filePuts, tempPuts := 0, 0
	for _, r := range reqs {
		byOp[r.Op]++
		if r.Op == s3proxy.OpPutObject && !strings.HasSuffix(r.Key, "/") {
			filePuts++
			if strings.Contains(r.Key, "/.") {
				tempPuts++
			}
		}
	}
	if fast {
		// Per file: one PutObject, of the final name, carrying the mode
		// and times; no copy and no delete.
		if filePuts != files || tempPuts != 0 || byOp[s3proxy.OpCopyObject] != 0 || byOp[s3proxy.OpDeleteObject] != 0 {
			t.Errorf("%d file PutObjects (%d of temporary names), %d CopyObjects, %d DeleteObjects for %d files; want one PutObject of the final name per file and nothing else",
				filePuts, tempPuts, byOp[s3proxy.OpCopyObject], byOp[s3proxy.OpDeleteObject], files)
		}
	} else if filePuts != files || byOp[s3proxy.OpCopyObject] != files || byOp[s3proxy.OpDeleteObject] != files {
		// Per file: one PutObject of the temporary name and one
		// CopyObject to the final name, carrying the mode and times; then
		// one DeleteObject of the temporary name, which need not be in
		// rsync's path.
		t.Errorf("%d file PutObjects, %d CopyObjects, %d DeleteObjects for %d files; want one of each per file",
			filePuts, byOp[s3proxy.OpCopyObject], byOp[s3proxy.OpDeleteObject], files)
	}
	// Lookups cost a few requests per directory and TTL (a listing
	// answers the rest), never one per file. MinIO ignores If-Match on
	// DeleteObject, so the delete of each temporary name is preceded by a
	// HEAD that checks it still holds the version copied (fs/later.go);
	// those are counted apart.
	checks := 0
	stored := map[string]bool{}
	for _, r := range reqs { // in arrival order
		switch {
		case r.Op == s3proxy.OpPutObject:
			stored[r.Key] = true
		case r.Op == s3proxy.OpHeadObject && stored[r.Key] && strings.Contains(r.Key, "/."):
			checks++ // a HEAD of a temporary name after its upload
		}
	}
	if checks > byOp[s3proxy.OpDeleteObject] {
		t.Errorf("%d HEADs of stored temporary names for %d deletes", checks, byOp[s3proxy.OpDeleteObject])
	}
	lookups := byOp[s3proxy.OpHeadObject] - checks + byOp[s3proxy.OpListObjectsV2]
	if bound := 10*(dirs+1) + int(10*elapsed.Seconds()); lookups > bound {
		t.Errorf("%d HEAD and LIST requests for %d files in %d directories in %v; want at most %d", lookups, files, dirs, elapsed, bound)
	}
	for op, n := range byOp {
		switch op {
		case s3proxy.OpPutObject, s3proxy.OpCopyObject, s3proxy.OpDeleteObject, s3proxy.OpHeadObject, s3proxy.OpListObjectsV2:
		default:
			t.Errorf("%d %s requests; an rsync of new files needs none", n, op)
		}
	}
	e.proxy.Reset()

	m2 := e.remount(m, cfg)
	diffTrees(t, src, m2.path("tree"))
	checkTree(t, src, m2.path("tree"))
	if n := rsyncStats(t, src, m2.path("tree")); n != 0 {
		t.Errorf("a second rsync -a transferred %d files, want 0", n)
	}
}

// TestFastCloseUploadFailures fails every PutObject of a file for a while
// under --fast-close: rsync's closes succeed, but the next fsync of the
// directory reports the failure, partfs status names the files, unmount
// exits non-zero naming them, and every file S3 holds is complete.
func TestFastCloseUploadFailures(t *testing.T) {
	requireTools(t, "rsync")
	const files = 20
	src := smallTree(t, 1, files, 5000)
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: append([]string{"--fast-close"}, flakyArgs...)})
	if err := os.Mkdir(m.path("stored"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("stored/before.txt"), []byte("stored before the fault"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fsyncDir(m.path("stored")); err != nil {
		t.Fatalf("fsync before the fault: %v", err)
	}
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op == s3proxy.OpPutObject && strings.HasPrefix(r.Key, "tree/") && !strings.HasSuffix(r.Key, "/") {
			return s3proxy.Error(403, "AccessDenied", "Access Denied.")
		}
		return s3proxy.Fault{}
	})
	if n := rsyncStats(t, src, m.path("tree")); n != files {
		t.Errorf("rsync -a transferred %d files, want %d", n, files)
	}
	err := fsyncDir(m.path("tree"))
	if err == nil {
		t.Fatal("fsync of the directory succeeded while every upload failed")
	}
	t.Logf("fsync of the directory: %v", err)
	out, serr := e.runPartfs("status", m.dir)
	if serr != nil || !strings.Contains(out, "NOT stored") || !strings.Contains(out, "file-0003.txt") {
		t.Errorf("partfs status does not name the files not stored: %v\n%s", serr, out)
	}
	m.dirtyExit = true
	if err := syscall.Unmount(m.dir, 0); err != nil {
		t.Fatalf("umount: %v", err)
	}
	if err := m.waitExit(2*(testRetryBudget+2*testIOTimeout) + time.Minute); err == nil {
		t.Error("partfs exited 0 although files were not stored")
	}
	log := m.log()
	for i := range files {
		if name := fmt.Sprintf("file-%04d.txt", i); !strings.Contains(log, name) {
			t.Errorf("the log does not name %s, which was not stored", name)
		}
	}
	e.proxy.SetFault(nil)
	if got := e.get("stored/before.txt"); string(got) != "stored before the fault" {
		t.Errorf("stored/before.txt: %q", got)
	}
	for i := range files {
		key := fmt.Sprintf("tree/d00/file-%04d.txt", i)
		if e.exists(key) {
			t.Errorf("%s exists although every upload of it failed", key)
		}
	}
}

// TestFastCloseCrash kills partfs (SIGKILL) under --fast-close right after
// closing many files: every object S3 holds then is complete and right;
// the files whose uploads had not finished are simply missing, as README
// says.
func TestFastCloseCrash(t *testing.T) {
	const files = 100
	e := newEnv(t)
	m := e.mount(mountConfig{extraArgs: []string{"--fast-close"}})
	want := map[string][]byte{}
	for i := range files {
		key := fmt.Sprintf("crash/f%03d", i)
		body := testkit.RandomBytes(uint64(1000+i), 64<<10+i)
		want[key] = body
		if err := os.MkdirAll(m.path("crash"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.path(key), body, 0o644); err != nil {
			t.Fatalf("close of %s: %v", key, err)
		}
	}
	m.kill()
	e.settle()
	present := 0
	for key, body := range want {
		if !e.exists(key) {
			continue
		}
		present++
		if got := e.get(key); !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes in S3 after the crash, not the %d written", key, len(got), len(body))
		}
	}
	t.Logf("after SIGKILL right after %d closes: %d objects in S3, all complete", files, present)
}
