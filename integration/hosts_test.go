package integration

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// Two mounts of one bucket stand in for two hosts. They believe what they
// saw for a minute (--stat-ttl), so that a file both looked at is a race
// whatever the order of the steps: each write states the version it saw.
var hostArgs = []string{"--stat-ttl", "1m", "--negative-ttl", "1m"}

// conflictCopies returns the keys of the conflict copies of key.
func (e *env) conflictCopies(key string) []string {
	e.t.Helper()
	prefix := key + ".partfs-conflict-"
	out, err := e.s3.ListObjectsV2(e.ctx(), &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: &prefix})
	if err != nil {
		e.t.Fatalf("list %s: %v", prefix, err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, *o.Key)
	}
	return keys
}

// onlyCopy returns the bytes of key's one conflict copy.
func (e *env) onlyCopy(key string) []byte {
	e.t.Helper()
	copies := e.conflictCopies(key)
	if len(copies) != 1 {
		e.t.Fatalf("conflict copies of %s: %v, want one", key, copies)
	}
	return e.get(copies[0])
}

func wantESTALE(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, syscall.ESTALE) {
		t.Errorf("%s: %v, want ESTALE", what, err)
	}
}

// checkPreconditions fails unless every PutObject and
// CompleteMultipartUpload of key the proxy saw carried If-Match the ETag
// base (If-None-Match: * when base is ""), and each of its conflict copies
// If-None-Match: *. Both hosts wrote on top of the same version, so their
// first writes carry the same condition.
func (e *env) checkPreconditions(key, base string) {
	e.t.Helper()
	e.settle()
	n := 0
	for _, r := range e.proxy.Requests() {
		if !strings.HasPrefix(r.Key, key) || (r.Op != s3proxy.OpPutObject && r.Op != s3proxy.OpCompleteMultipartUpload) {
			continue
		}
		n++
		switch {
		case r.Key != key || base == "":
			if r.IfNoneMatch != "*" || r.IfMatch != "" {
				e.t.Errorf("%s %s: If-Match %q If-None-Match %q, want If-None-Match *", r.Op, r.Key, r.IfMatch, r.IfNoneMatch)
			}
		case strings.Trim(r.IfMatch, `"`) != base || r.IfNoneMatch != "":
			e.t.Errorf("%s %s: If-Match %q If-None-Match %q, want If-Match %q", r.Op, r.Key, r.IfMatch, r.IfNoneMatch, base)
		}
	}
	if n == 0 {
		e.t.Errorf("no PutObject or CompleteMultipartUpload of %s seen", key)
	}
}

// openBoth opens name on both mounts with flags, after each mount has
// looked at it.
func openBoth(t *testing.T, a, b *mount, name string, flags int) (*os.File, *os.File) {
	t.Helper()
	var files [2]*os.File
	for i, m := range []*mount{a, b} {
		os.Stat(m.path(name))
		f, err := os.OpenFile(m.path(name), flags, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i] = f
	}
	return files[0], files[1]
}

// TestAppendRace: both hosts append a line to one stored file; A closes,
// then B. B's close fails with ESTALE, A's line is in the object, and the
// conflict copy holds exactly what B would have stored.
func TestAppendRace(t *testing.T) {
	e := newEnv(t)
	a := e.mount(mountConfig{extraArgs: hostArgs})
	b := e.mount(mountConfig{extraArgs: hostArgs})
	base := testkit.RandomBytes(1, 20<<10)
	etag := e.put("log.txt", base)
	fa, fb := openBoth(t, a, b, "log.txt", os.O_WRONLY|os.O_APPEND)
	if _, err := fa.WriteString("line from A\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := fb.WriteString("line from B\n"); err != nil {
		t.Fatal(err)
	}
	if err := fa.Close(); err != nil {
		t.Fatalf("A's close: %v", err)
	}
	wantESTALE(t, "B's close", fb.Close())
	if got := e.get("log.txt"); !bytes.Equal(got, append(bytes.Clone(base), "line from A\n"...)) {
		t.Errorf("the object after the race: %d bytes ending %q", len(got), got[max(0, len(got)-20):])
	}
	if got := e.onlyCopy("log.txt"); !bytes.Equal(got, append(bytes.Clone(base), "line from B\n"...)) {
		t.Errorf("B's conflict copy: %d bytes ending %q", len(got), got[max(0, len(got)-20):])
	}
	e.checkPreconditions("log.txt", etag)
}

// TestCreateRace: both hosts create one new name; one close fails with
// ESTALE and its bytes are in the conflict copy.
func TestCreateRace(t *testing.T) {
	e := newEnv(t)
	a := e.mount(mountConfig{extraArgs: hostArgs})
	b := e.mount(mountConfig{extraArgs: hostArgs})
	fa, fb := openBoth(t, a, b, "new.txt", os.O_WRONLY|os.O_CREATE)
	fa.WriteString("written by A")
	fb.WriteString("written by B")
	if err := fa.Close(); err != nil {
		t.Fatalf("A's close: %v", err)
	}
	wantESTALE(t, "B's close", fb.Close())
	if got := e.get("new.txt"); string(got) != "written by A" {
		t.Errorf("new.txt: %q", got)
	}
	if got := e.onlyCopy("new.txt"); string(got) != "written by B" {
		t.Errorf("B's conflict copy: %q", got)
	}
	e.checkPreconditions("new.txt", "")
}

// TestEditRace: both hosts edit different ranges of one stored file in
// place; A closes, then B. Both edits survive, A's in the object, B's (on
// top of A's version) in the conflict copy. With 40 MiB the edits land in
// different parts of a multipart object.
func TestEditRace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size       int
		offA, offB int64
	}{
		{"20KiB", 20 << 10, 100, 15 << 10},
		{"40MiB", 40 << 20, 1 << 20, 25 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.mount(mountConfig{extraArgs: hostArgs})
			b := e.mount(mountConfig{extraArgs: hostArgs})
			base := testkit.RandomBytes(2, tc.size)
			etag := e.put("data.bin", base)
			fa, fb := openBoth(t, a, b, "data.bin", os.O_RDWR)
			editA, editB := []byte("EDIT BY HOST A"), []byte("EDIT BY HOST B")
			if _, err := fa.WriteAt(editA, tc.offA); err != nil {
				t.Fatal(err)
			}
			if _, err := fb.WriteAt(editB, tc.offB); err != nil {
				t.Fatal(err)
			}
			if err := fa.Close(); err != nil {
				t.Fatalf("A's close: %v", err)
			}
			wantESTALE(t, "B's close", fb.Close())
			withA := bytes.Clone(base)
			copy(withA[tc.offA:], editA)
			both := bytes.Clone(withA)
			copy(both[tc.offB:], editB)
			if got := e.get("data.bin"); !bytes.Equal(got, withA) {
				t.Errorf("the object does not hold A's edit alone")
			}
			if got := e.onlyCopy("data.bin"); !bytes.Equal(got, both) {
				t.Errorf("the conflict copy does not hold B's edit on A's version")
			}
			e.checkPreconditions("data.bin", etag)
		})
	}
}

// TestOverwriteRace: cp onto one stored file from both hosts. By default
// the second close fails with ESTALE and its bytes are kept; with
// --on-conflict overwrite both succeed and the last close wins.
func TestOverwriteRace(t *testing.T) {
	for _, mode := range []string{"copy", "overwrite"} {
		t.Run(mode, func(t *testing.T) {
			requireTools(t, "cp")
			e := newEnv(t)
			args := append([]string{"--on-conflict", mode}, hostArgs...)
			a := e.mount(mountConfig{extraArgs: args})
			b := e.mount(mountConfig{extraArgs: args})
			etag := e.put("target", []byte("old contents"))
			dir := t.TempDir()
			srcA, srcB := dir+"/a", dir+"/b"
			os.WriteFile(srcA, []byte("contents from A"), 0o644)
			os.WriteFile(srcB, []byte("contents from B"), 0o644)
			os.Stat(a.path("target"))
			os.Stat(b.path("target"))
			if out, err := run(t, time.Minute, "cp", srcA, a.path("target")); err != nil {
				t.Fatalf("cp on A: %v %s", err, out)
			}
			out, errB := run(t, time.Minute, "cp", srcB, b.path("target"))
			switch mode {
			case "copy":
				if errB == nil {
					t.Errorf("cp on B succeeded over A's newer version: %s", out)
				}
				if got := e.get("target"); string(got) != "contents from A" {
					t.Errorf("target: %q", got)
				}
				if got := e.onlyCopy("target"); string(got) != "contents from B" {
					t.Errorf("B's conflict copy: %q", got)
				}
				e.checkPreconditions("target", etag)
			case "overwrite":
				if errB != nil {
					t.Errorf("cp on B: %v %s", errB, out)
				}
				if got := e.get("target"); string(got) != "contents from B" {
					t.Errorf("target: %q, want the last close's", got)
				}
				if c := e.conflictCopies("target"); len(c) != 0 {
					t.Errorf("conflict copies with --on-conflict overwrite: %v", c)
				}
			}
		})
	}
}

// TestRenameRace: A renames a file while B rewrites it; the delete of the
// old name after A's copy must not remove B's new version.
func TestRenameRace(t *testing.T) {
	e := newEnv(t)
	a := e.mount(mountConfig{extraArgs: hostArgs})
	b := e.mount(mountConfig{extraArgs: hostArgs})
	e.put("src", []byte("first version"))
	// B stores its version after A's copy, while A is about to delete
	// the old name: MinIO ignores If-Match on DeleteObject, so A checks
	// the version with a HEAD first; the HEAD waits for B's write.
	release := make(chan struct{})
	var copied, held atomic.Bool
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		switch {
		case r.Op == s3proxy.OpCopyObject && r.Key == "dst":
			copied.Store(true)
		case copied.Load() && r.Key == "src" && (r.Op == s3proxy.OpHeadObject || r.Op == s3proxy.OpDeleteObject) && !held.Swap(true):
			<-release
		}
		return s3proxy.Fault{}
	})
	os.Stat(b.path("src"))
	if err := os.Rename(a.path("src"), a.path("dst")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.path("src"), []byte("B's new version"), 0o644); err != nil {
		t.Fatalf("B's rewrite: %v", err)
	}
	close(release)
	if err := fsyncDir(a.dir); err != nil {
		t.Errorf("fsync on A: %v", err)
	}
	e.proxy.SetFault(nil)
	if got := e.get("dst"); string(got) != "first version" {
		t.Errorf("dst: %q", got)
	}
	if !e.exists("src") || string(e.get("src")) != "B's new version" {
		t.Errorf("B's new version of src was deleted by A's rename")
	}
}

// TestServerWithoutConditions: a server that refuses conditional writes is
// detected at mount and said so; --on-conflict overwrite then works there
// without preconditions.
func TestServerWithoutConditions(t *testing.T) {
	e := newEnv(t)
	e.proxy.SetRejectConditions(true)
	m := e.mount(mountConfig{})
	if err := os.WriteFile(m.path("f"), []byte("stored"), 0o644); err != nil {
		t.Fatalf("write on a server without conditional writes: %v", err)
	}
	if !strings.Contains(m.log(), "refuses conditional writes") {
		t.Errorf("the mount did not say the server refuses conditional writes:\n%s", m.logTail())
	}
	m2 := e.mount(mountConfig{extraArgs: []string{"--on-conflict", "overwrite"}})
	e.proxy.Reset()
	if err := os.WriteFile(m2.path("g"), []byte("stored too"), 0o644); err != nil {
		t.Fatalf("write with --on-conflict overwrite: %v", err)
	}
	e.settle()
	for _, r := range e.proxy.Requests() {
		if r.Op == s3proxy.OpPutObject && (r.IfMatch != "" || r.IfNoneMatch != "") {
			t.Errorf("%s %s carried a precondition with --on-conflict overwrite", r.Op, r.Key)
		}
	}
	if string(e.get("f")) != "stored" || string(e.get("g")) != "stored too" {
		t.Error("files not stored")
	}
}
