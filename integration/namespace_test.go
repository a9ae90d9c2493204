package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/internal/testkit"
)

// Renames, metadata changes, symbolic links and awkward names through the
// mount, checked after mounting the bucket again.

// touchDate is the time TestRenameMetadataSymlinks gives with touch -d, in
// the local time zone as touch reads it.
const touchDate = "2021-03-04 05:06:07"

// listKeys returns every key in the bucket, sorted.
func (e *env) listKeys() []string {
	e.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(e.s3, &s3.ListObjectsV2Input{Bucket: &e.bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(e.ctx())
		if err != nil {
			e.t.Fatalf("list %s: %v", e.bucket, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, *o.Key)
		}
	}
	sort.Strings(keys)
	return keys
}

// checkGone fails when a key equal to name or under name/ is stored.
func (e *env) checkGone(name string) {
	e.t.Helper()
	for _, k := range e.listKeys() {
		if k == name || strings.HasPrefix(k, name+"/") {
			e.t.Errorf("%q is still stored after the rename", k)
		}
	}
}

// checkStat fails unless path has permission bits perm and modification
// time mtime (whole seconds).
func checkStat(t testing.TB, path string, perm fs.FileMode, mtime time.Time) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("stat: %v", err)
		return
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), perm)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("%s: mtime %v, want %v", path, fi.ModTime(), mtime)
	}
}

// checkLink fails unless path is a symbolic link to target.
func checkLink(t testing.TB, path, target string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("lstat: %v", err)
		return
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("%s: mode %v, want a symbolic link", path, fi.Mode())
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Errorf("readlink %s: %q, %v; want %q", path, got, err, target)
	}
}

// modelDir builds a directory outside the mount for TestRenameMetadataSymlinks:
// files of several sizes (one over a part), an empty file, a subdirectory
// with an empty directory in it, and relative symbolic links.
func modelDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dir")
	if err := os.MkdirAll(filepath.Join(dir, "sub", "empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		name := filepath.Join(dir, fmt.Sprintf("f%02d.txt", i))
		if err := os.WriteFile(name, testkit.RandomBytes(uint64(100+i), int64(i)*1000+1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		"empty":         nil,
		"sub/deep.bin":  testkit.RandomBytes(200, 9*miB+3),
		"sub/small.txt": []byte("small\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{"link": "f01.txt", "sub/up": "../f02.txt"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRenameMetadataSymlinks moves a 100 MiB file and a directory of files
// with mv, changes modes and times with chmod and touch -d (of files at
// rest, so the stored objects are copied onto themselves with new
// metadata), replaces a file by renaming another onto it, and makes
// symbolic links. All of it must survive unmounting and mounting again.
func TestRenameMetadataSymlinks(t *testing.T) {
	requireTools(t, "cp", "mv", "chmod", "touch", "diff")
	const big, bigSize = "big.bin", 100 * miB
	bigModel, bigSum := urandomFile(t, bigSize)
	model := modelDir(t)
	mtime, err := time.ParseInLocation("2006-01-02 15:04:05", touchDate, time.Local)
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t)
	e.putFile(big, bigModel)
	cfg := mountConfig{}
	m := e.mount(cfg)

	// The 100 MiB object: chmod and touch, then mv into another directory.
	sh(t, time.Minute, `chmod 0640 "$1" && touch -d "$2" "$1"`, m.path(big), touchDate)
	if err := os.Mkdir(m.path("moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sh(t, 2*time.Minute, `mv "$1" "$2"`, m.path(big), m.path("moved/big-renamed.bin"))
	t.Logf("mv of the 100 MiB file: %v", time.Since(start).Round(time.Millisecond))
	checkStat(t, m.path("moved/big-renamed.bin"), 0o640, mtime)

	// The directory: copied in, metadata changed at rest, then moved.
	if out, err := run(t, 2*time.Minute, "cp", "-a", model, m.path("dir")); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	for _, dir := range []string{model, m.path("dir")} {
		sh(t, time.Minute, `cd "$1" && chmod 0640 f03.txt sub/deep.bin && touch -d "$2" f04.txt sub/deep.bin && chmod 0700 sub`, dir, touchDate)
	}
	start = time.Now()
	sh(t, 2*time.Minute, `mv "$1" "$2"`, m.path("dir"), m.path("renamed-dir"))
	t.Logf("mv of a directory: %v", time.Since(start).Round(time.Millisecond))

	// A rename onto an existing file replaces it.
	for name, body := range map[string]string{"new.txt": "the new content\n", "old.txt": "the old content, longer\n"} {
		if err := os.WriteFile(m.path(name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, time.Minute, `mv "$1" "$2"`, m.path("new.txt"), m.path("old.txt"))

	// Symbolic links at the top: to the moved file, and dangling.
	links := map[string]string{"big-link": "moved/big-renamed.bin", "dangling": "/no/such/target"}
	for name, target := range links {
		if err := os.Symlink(target, m.path(name)); err != nil {
			t.Fatal(err)
		}
	}

	e.checkGone(big)
	e.checkGone("dir")
	e.checkGone("new.txt")

	m2 := e.remount(m, cfg)
	t.Run("file", func(t *testing.T) {
		e.checkObject("moved/big-renamed.bin", bigSum, bigSize)
		checkStat(t, m2.path("moved/big-renamed.bin"), 0o640, mtime)
		if _, err := os.Lstat(m2.path(big)); !os.IsNotExist(err) {
			t.Errorf("lstat of the old name after mounting again: %v, want ENOENT", err)
		}
		key := "moved/big-renamed.bin"
		out, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		// s3fs's names and formats: S_IFREG|0640 in decimal, Unix seconds.
		want := map[string]string{"mode": strconv.Itoa(syscall.S_IFREG | 0o640), "mtime": strconv.FormatInt(mtime.Unix(), 10)}
		for k, v := range want {
			if out.Metadata[k] != v {
				t.Errorf("x-amz-meta-%s is %q, want %q (all: %v)", k, out.Metadata[k], v, out.Metadata)
			}
		}
	})
	t.Run("dir", func(t *testing.T) {
		diffTrees(t, model, m2.path("renamed-dir"))
		checkTree(t, model, m2.path("renamed-dir"))
		checkStat(t, m2.path("renamed-dir/f04.txt"), 0o644, mtime)
		checkStat(t, m2.path("renamed-dir/sub/deep.bin"), 0o640, mtime)
		if _, err := os.Lstat(m2.path("dir")); !os.IsNotExist(err) {
			t.Errorf("lstat of the old directory after mounting again: %v, want ENOENT", err)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		if b, err := os.ReadFile(m2.path("old.txt")); err != nil || string(b) != "the new content\n" {
			t.Errorf("old.txt after renaming new.txt onto it: %q, %v", b, err)
		}
		if _, err := os.Lstat(m2.path("new.txt")); !os.IsNotExist(err) {
			t.Errorf("lstat new.txt: %v, want ENOENT", err)
		}
	})
	t.Run("symlinks", func(t *testing.T) {
		for name, target := range links {
			checkLink(t, m2.path(name), target)
		}
		checkLink(t, m2.path("renamed-dir/link"), "f01.txt")
		checkLink(t, m2.path("renamed-dir/sub/up"), "../f02.txt")
		if b, err := os.ReadFile(m2.path("renamed-dir/sub/up")); err != nil || !bytes.Equal(b, testkit.RandomBytes(102, 2001)) {
			t.Errorf("read through renamed-dir/sub/up: %d bytes, %v", len(b), err)
		}
		if fi, err := os.Stat(m2.path("big-link")); err != nil || fi.Size() != bigSize {
			t.Errorf("stat through big-link: %v, %v", fi, err)
		}
	})
	e.checkNoUploads()
}

// awkwardNames are file names that URL encoding, signing and listing tend
// to get wrong.
var awkwardNames = []string{
	"with space.txt",
	" leading and trailing spaces ",
	"ünïcødé – 日本語 ✓.txt",
	"100%.txt",
	"%41%2F%zz%",
	"a+b=c.txt",
	"what?.txt",
	"#hash#.txt",
	"all ?#%+&=;,'!$@~ in one.txt",
}

// TestAwkwardNames creates files and a directory whose names hold spaces,
// non-ASCII letters, %, +, ? and # through the mount and renames some of
// them to other such names. The S3 client must list exactly those keys,
// with those bytes, and a second mount must list and read them back.
func TestAwkwardNames(t *testing.T) {
	requireTools(t, "mv")
	e := newEnv(t)
	cfg := mountConfig{}
	m := e.mount(cfg)

	const dir, movedDir, inner = "dir ü %+?#", "moved dir ✓ %2B+?#", "file #1?.txt"
	const from, to = "a+b=c.txt", "renamed %2B+?# ü.txt"
	for _, name := range awkwardNames {
		if err := os.WriteFile(m.path(name), []byte(name), 0o644); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	if err := os.Mkdir(m.path(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path(dir+"/"+inner), []byte(inner), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, time.Minute, `mv "$1" "$2" && mv "$3" "$4"`, m.path(from), m.path(to), m.path(dir), m.path(movedDir))

	// What the files hold, by key; the directory's marker is not compared.
	want := map[string]string{movedDir + "/" + inner: inner}
	for _, name := range awkwardNames {
		want[name] = name
	}
	delete(want, from)
	want[to] = from
	var wantKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	sort.Strings(wantKeys)
	var gotKeys []string
	for _, k := range e.listKeys() {
		if !strings.HasSuffix(k, "/") {
			gotKeys = append(gotKeys, k)
		}
	}
	if strings.Join(gotKeys, "\n") != strings.Join(wantKeys, "\n") {
		t.Errorf("the S3 client lists\n%q\nwant\n%q", gotKeys, wantKeys)
	}
	for k, body := range want {
		if got := e.get(k); string(got) != body {
			t.Errorf("object %q holds %q, want %q", k, got, body)
		}
	}

	m2 := e.remount(m, cfg)
	entries, err := os.ReadDir(m2.dir)
	if err != nil {
		t.Fatal(err)
	}
	var gotNames []string
	for _, en := range entries {
		gotNames = append(gotNames, en.Name())
	}
	var wantNames []string
	for k := range want {
		name, _, _ := strings.Cut(k, "/")
		if !slices.Contains(wantNames, name) {
			wantNames = append(wantNames, name)
		}
	}
	sort.Strings(wantNames)
	sort.Strings(gotNames)
	if strings.Join(gotNames, "\n") != strings.Join(wantNames, "\n") {
		t.Errorf("the mount lists\n%q\nwant\n%q", gotNames, wantNames)
	}
	for k, body := range want {
		if got, err := os.ReadFile(m2.path(k)); err != nil || string(got) != body {
			t.Errorf("read %q through the mount: %q, %v; want %q", k, got, err, body)
		}
	}
	if inners, err := os.ReadDir(m2.path(movedDir)); err != nil || len(inners) != 1 || inners[0].Name() != inner {
		t.Errorf("%q lists %v (%v), want only %q", movedDir, inners, err, inner)
	}
	e.checkNoUploads()
}
