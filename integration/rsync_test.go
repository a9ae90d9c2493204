package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

func sum(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// perFile formats counts divided by files, sorted by operation.
func perFile(m map[string]int, files int) string {
	var parts []string
	for op, c := range m {
		parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(c)/float64(files)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// TestRsyncRequests counts the requests an rsync -a of new small files
// costs through a mount in the default (durable) mode: per file at most a
// PutObject and a CopyObject while rsync runs, at most a DeleteObject
// after, and only a bounded few lookups per directory. A second rsync -a
// transfers nothing, and a fresh mount shows the same bytes, modes and
// mtimes.
func TestRsyncRequests(t *testing.T) {
	requireTools(t, "rsync", "diff")
	const dirs, files = 4, 200
	src := smallTree(t, dirs, files, 3000)
	e := newEnv(t)
	cfg := mountConfig{}
	m := e.mount(cfg)
	e.settle()
	e.proxy.Reset()

	start := time.Now()
	if n := rsyncStats(t, src, m.path("tree")); n != files {
		t.Errorf("rsync -a transferred %d files, want %d", n, files)
	}
	end := time.Now()
	if t.Failed() {
		t.Fatalf("partfs log:\n%s", m.logTail())
	}
	e.settle()
	reqs := e.proxy.Requests()
	s := splitRequests(reqs, end)
	elapsed := end.Sub(start)
	t.Logf("rsync -a of %d files in %d directories: %v", files, dirs, elapsed.Round(time.Millisecond))
	t.Logf("requests per file in rsync's path: %s", perFile(s.path, files))
	t.Logf("requests per file after rsync returned: %s", perFile(s.background, files))
	byOp := map[string]int{}
	filePuts := 0
	for _, r := range reqs {
		byOp[r.Op]++
		if r.Op == s3proxy.OpPutObject && !strings.HasSuffix(r.Key, "/") {
			filePuts++
		}
	}
	// Per file: one PutObject of the temporary name and one CopyObject to
	// the final name, carrying the mode and times; then one DeleteObject
	// of the temporary name, which need not be in rsync's path.
	if filePuts != files || byOp[s3proxy.OpCopyObject] != files || byOp[s3proxy.OpDeleteObject] != files {
		t.Errorf("%d file PutObjects, %d CopyObjects, %d DeleteObjects for %d files; want one of each per file",
			filePuts, byOp[s3proxy.OpCopyObject], byOp[s3proxy.OpDeleteObject], files)
	}
	// Lookups cost a few requests per directory and TTL (a listing
	// answers the rest), never one per file.
	lookups := byOp[s3proxy.OpHeadObject] + byOp[s3proxy.OpListObjectsV2]
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
