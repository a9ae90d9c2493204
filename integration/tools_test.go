package integration

import (
	"crypto/md5"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
)

// The tools people point at a mount: cp -a, rsync -a and tar -x of a real
// source tree, and sqlite3. Each writes through one mount and is checked
// through a second mount of the same bucket, so that what is compared is
// what S3 holds, not what the first mount remembers.

// requireTools fails the test when a command it runs is not installed.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s is not installed: run `make test-deps` (as root it installs rsync and sqlite3 with apt-get), or apt-get install %s", name, name)
		}
	}
}

// remount stops m, which flushes and unmounts it, and mounts the bucket
// again with cfg.
func (e *env) remount(m *mount, cfg mountConfig) *mount {
	e.t.Helper()
	m.stop()
	return e.mount(cfg)
}

// checkNoUploads fails when a multipart upload is left in the bucket. An
// abort may trail the failure it follows by a moment, so the listing is
// asked again for a few seconds before the test fails.
func (e *env) checkNoUploads() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	ups := e.uploads()
	for len(ups) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		ups = e.uploads()
	}
	for _, u := range ups {
		e.t.Errorf("multipart upload of %q (started %v) left behind", *u.Key, u.Initiated)
	}
}

// sh runs a shell command line with arguments $1, $2, ... and fails the
// test when it fails.
func sh(t testing.TB, timeout time.Duration, script string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, "sh", append([]string{"-c", script, "sh"}, args...)...)
	if err != nil {
		t.Fatalf("sh -c %q %q: %v\n%s", script, args, err, out)
	}
	return out
}

// urandomFile writes size random bytes to a new file outside the mount and
// returns its path and MD5. It reads the kernel's generator, which is
// faster than a seeded stream under the race detector; the bytes need not
// be reproducible because the file is the model the test compares with.
func urandomFile(t testing.TB, size int64) (string, [md5.Size]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	var s [md5.Size]byte
	copy(s[:], h.Sum(nil))
	return path, s
}

// treeBase is the modification time of the first file of sourceTree.
var treeBase = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// sourceTree copies Go's net package sources (several hundred files in a
// few dozen directories) into a temporary directory and gives the copy
// metadata of the test's choosing: whole-second modification times all
// different, modes 0644, 0600 and 0755, some files owned by 1234:5678 when
// running as root, an empty file, an empty directory and a symbolic link.
func sourceTree(t testing.TB) string {
	t.Helper()
	goroot, err := run(t, time.Minute, goTool(), "env", "GOROOT")
	if err != nil {
		t.Fatalf("go env GOROOT: %v %s", err, goroot)
	}
	src := filepath.Join(t.TempDir(), "net")
	if out, err := run(t, time.Minute, "cp", "-r", filepath.Join(goroot, "src", "net"), src); err != nil {
		t.Fatalf("cp -r: %v %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(src, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("doc.go", filepath.Join(src, "http", "doc-link.go")); err != nil {
		t.Fatal(err)
	}
	var paths []string
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			paths = append(paths, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	files := 0
	for i, path := range paths {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		switch {
		case fi.IsDir() && i%5 == 0:
			mode = 0o750
		case fi.IsDir():
			mode = 0o755
		case i%7 == 0:
			mode = 0o600
		case i%11 == 0:
			mode = 0o755
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if root && i%5 == 1 {
			if err := os.Lchown(path, 1234, 5678); err != nil {
				t.Fatal(err)
			}
		}
		mtime := treeBase.Add(time.Duration(i) * 3607 * time.Second)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			files++
		}
	}
	if files < 300 {
		t.Fatalf("the source tree has %d files, want several hundred", files)
	}
	t.Logf("source tree: %d files in %d directories", files, len(paths)-files)
	return src
}

// checkTree fails unless got holds the same entries as want with the same
// type, permission bits, owner, size, whole-second modification time
// (symbolic links: target instead of size and time).
func checkTree(t testing.TB, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	err := filepath.WalkDir(want, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, path)
		seen[rel] = true
		wi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			report("%s: %v", rel, err)
			return nil
		}
		if wi.Mode() != gi.Mode() {
			report("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		ws, gs := wi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t)
		if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
			report("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, _ := os.Readlink(path)
			gl, err := os.Readlink(filepath.Join(got, rel))
			if err != nil || gl != wl {
				report("%s: link to %q (%v), want %q", rel, gl, err, wl)
			}
		case wi.Mode().IsRegular() && wi.Size() != gi.Size():
			report("%s: %d bytes, want %d", rel, gi.Size(), wi.Size())
		}
		if wi.Mode()&fs.ModeSymlink == 0 && wi.ModTime().Unix() != gi.ModTime().Unix() {
			report("%s: mtime %v, want %v", rel, gi.ModTime().UTC(), wi.ModTime().UTC())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", want, err)
	}
	err = filepath.WalkDir(got, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(got, path); !seen[rel] {
			report("%s: not in the source", rel)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", got, err)
	}
	if bad > 20 {
		t.Errorf("... %d differences in all", bad)
	}
}

// diffTrees fails unless diff -r finds a and b equal.
func diffTrees(t testing.TB, a, b string) {
	t.Helper()
	if out, err := run(t, 2*time.Minute, "diff", "-r", a, b); err != nil {
		if len(out) > 4000 {
			out = out[:4000] + "\n..."
		}
		t.Errorf("diff -r %s %s: %v\n%s", a, b, err, out)
	}
}

// opCounts settles the proxy, summarises the requests it recorded by
// operation and forgets them.
func (e *env) opCounts() string {
	e.t.Helper()
	e.settle()
	n := map[string]int{}
	for _, r := range e.proxy.Requests() {
		n[r.Op]++
	}
	e.proxy.Reset()
	var parts []string
	for op, c := range n {
		parts = append(parts, fmt.Sprintf("%s %d", op, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

var rsyncTransferred = regexp.MustCompile(`Number of regular files transferred: ([0-9,]+)`)

// rsyncStats runs rsync -a --stats from src/ to dst/ and returns the number
// of regular files it transferred.
func rsyncStats(t testing.TB, src, dst string) int {
	t.Helper()
	out, err := run(t, 3*time.Minute, "rsync", "-a", "--stats", src+"/", dst+"/")
	if err != nil {
		t.Fatalf("rsync -a: %v\n%s", err, out)
	}
	m := rsyncTransferred.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no transfer count in rsync's statistics:\n%s", out)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTreeCopies copies a real source tree into the mount with cp -a, with
// rsync -a and by extracting a tarball of it with tar -x. Mounted again,
// each copy must be equal to the source for diff -r and carry its modes,
// owners and times, and a second rsync -a must find nothing to transfer.
// It runs the build without the race detector, under which the 1,250 files
// take twice as long; TestRenameMetadataSymlinks and TestAwkwardNames run
// the same paths (create, metadata changes, rename) under it.
func TestTreeCopies(t *testing.T) {
	requireTools(t, "cp", "rsync", "tar", "diff")
	src := sourceTree(t)
	tarball := filepath.Join(t.TempDir(), "net.tar")
	if out, err := run(t, time.Minute, "tar", "-cf", tarball, "-C", src, "."); err != nil {
		t.Fatalf("tar -c: %v %s", err, out)
	}

	e := newEnv(t)
	cfg := mountConfig{plain: true}
	m := e.mount(cfg)
	copies := []struct {
		name, dir string
		copy      func(dst string)
	}{
		{"cp -a", "cp", func(dst string) {
			if out, err := run(t, 3*time.Minute, "cp", "-a", src, dst); err != nil {
				t.Errorf("cp -a: %v\n%s", err, out)
			}
		}},
		{"rsync -a", "rsync", func(dst string) {
			if n := rsyncStats(t, src, dst); n < 300 {
				t.Errorf("rsync -a transferred %d regular files, want all of them", n)
			}
		}},
		{"tar -x", "tar", func(dst string) {
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, 3*time.Minute, "tar", "-xf", tarball, "-C", dst); err != nil {
				t.Errorf("tar -x: %v\n%s", err, out)
			}
		}},
	}
	for _, c := range copies {
		start := time.Now()
		c.copy(m.path(c.dir))
		t.Logf("%s into the mount: %v; requests: %s", c.name, time.Since(start).Round(time.Millisecond), e.opCounts())
	}

	start := time.Now()
	m2 := e.remount(m, cfg)
	t.Logf("unmount and mount again: %v", time.Since(start).Round(time.Millisecond))
	for _, c := range copies {
		t.Run(strings.ReplaceAll(c.name, " ", ""), func(t *testing.T) {
			start := time.Now()
			diffTrees(t, src, m2.path(c.dir))
			checkTree(t, src, m2.path(c.dir))
			t.Logf("diff -r and metadata after mounting again: %v", time.Since(start).Round(time.Millisecond))
		})
	}
	start = time.Now()
	if n := rsyncStats(t, src, m2.path("rsync")); n != 0 {
		t.Errorf("a second rsync -a transferred %d regular files, want 0", n)
	}
	t.Logf("second rsync -a: %v", time.Since(start).Round(time.Millisecond))
	e.checkNoUploads()
}

// sqliteRows is the number of rows TestSQLite inserts: sqliteTxns
// transactions of sqliteRows/sqliteTxns inserts.
const (
	sqliteTxns = 20
	sqliteRows = 10000
)

// sqliteScript writes the SQL that TestSQLite feeds sqlite3. Each row holds
// 800 random bytes, so the database (about 8 MiB) outgrows one 5 MiB part
// and later transactions rewrite pages in parts already uploaded.
func sqliteScript(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, body BLOB NOT NULL);\n")
	b.WriteString("CREATE INDEX t_n ON t (n);\n")
	per := sqliteRows / sqliteTxns
	for txn := range sqliteTxns {
		b.WriteString("BEGIN;\n")
		for i := range per {
			fmt.Fprintf(&b, "INSERT INTO t (n, body) VALUES (%d, randomblob(800));\n", txn*per+i+1)
		}
		b.WriteString("COMMIT;\n")
	}
	path := filepath.Join(t.TempDir(), "inserts.sql")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sqliteQuery runs one statement against db and returns its output.
func sqliteQuery(t testing.TB, db, query string) string {
	t.Helper()
	out, err := run(t, 2*time.Minute, "sqlite3", "-bail", db, query)
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v\n%s", db, query, err, out)
	}
	return out
}

// checkSQLite fails unless db passes sqlite's integrity check and holds
// the rows TestSQLite inserted.
func checkSQLite(t testing.TB, db string) {
	t.Helper()
	if got := sqliteQuery(t, db, "PRAGMA integrity_check;"); got != "ok" {
		t.Errorf("%s: PRAGMA integrity_check says %q, want ok", db, got)
	}
	want := fmt.Sprintf("%d|%d|%d", sqliteRows, sqliteRows, sqliteRows*(sqliteRows+1)/2)
	if got := sqliteQuery(t, db, "SELECT count(*), count(DISTINCT n), sum(n) FROM t WHERE length(body) = 800;"); got != want {
		t.Errorf("%s: count, distinct and sum of the rows are %q, want %q", db, got, want)
	}
}

// TestSQLite builds a database in the mount with sqlite3 in its default
// rollback-journal mode: 20 transactions of 500 inserts, each committed with
// the journal written, fsynced and deleted and the database pages
// rewritten in place. Mounted again, and downloaded with the S3 client, the
// database must pass sqlite's integrity check and hold every row.
func TestSQLite(t *testing.T) {
	requireTools(t, "sqlite3")
	script := sqliteScript(t)
	e := newEnv(t)
	cfg := mountConfig{partSize: 5 * miB}
	m := e.mount(cfg)
	if err := os.Mkdir(m.path("db"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := run(t, 3*time.Minute, "sqlite3", "-bail", m.path("db/test.db"), ".read "+script); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	t.Logf("%d transactions of %d inserts: %v", sqliteTxns, sqliteRows/sqliteTxns, time.Since(start).Round(time.Millisecond))

	e.settle()
	size := int64(len(e.get("db/test.db")))
	t.Logf("database: %.1f MiB; %d UploadPart, %d UploadPartCopy, %d PutObject, %d CompleteMultipartUpload",
		float64(size)/float64(miB), len(e.proxy.Ops(s3proxy.OpUploadPart)), len(e.proxy.Ops(s3proxy.OpUploadPartCopy)),
		len(e.proxy.Ops(s3proxy.OpPutObject)), len(e.proxy.Ops(s3proxy.OpCompleteMultipartUpload)))

	m2 := e.remount(m, cfg)
	checkSQLite(t, m2.path("db/test.db"))
	if entries, err := os.ReadDir(m2.path("db")); err != nil || len(entries) != 1 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("db/ holds %q (%v), want only test.db: the journal must be gone", names, err)
	}

	local := filepath.Join(t.TempDir(), "test.db")
	if err := os.WriteFile(local, e.get("db/test.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkSQLite(t, local)
	e.checkNoUploads()
}
