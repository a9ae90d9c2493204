package fs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// putMultipart stores body as a multipart object of parts of partSize, as
// another client would store an object too large for one request.
func (m *testMount) putMultipart(t *testing.T, key string, body []byte, partSize int, md store.Metadata) store.Object {
	t.Helper()
	ctx := context.Background()
	id, err := m.st.CreateMultipart(ctx, key, store.PutOptions{Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	var parts []store.Part
	for off, n := 0, int32(1); off < len(body); off, n = off+partSize, n+1 {
		b := body[off:min(off+partSize, len(body))]
		p, err := m.st.UploadPart(ctx, key, id, n, b, store.Sum(b))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	obj, err := m.st.CompleteMultipart(ctx, key, id, parts, store.Condition{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// metadata returns a stored object's user metadata.
func (m *testMount) metadata(t *testing.T, key string) store.Metadata {
	t.Helper()
	obj, err := m.st.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("stat %q: %v", key, err)
	}
	return obj.Metadata
}

func (m *testMount) wantObject(t *testing.T, key string, want []byte) {
	t.Helper()
	if got := m.object(t, key); !bytes.Equal(got, want) {
		t.Fatalf("object %q: %d bytes %.20q, want %d bytes %.20q", key, len(got), got, len(want), want)
	}
}

func TestRenameFile(t *testing.T) {
	m := newMount(t, nil)
	md := store.Metadata{"mode": "33184", "uid": "7", "gid": "8", "mtime": "1700000000", "other": "kept"}
	m.put(t, "a.txt", []byte("content"), md)
	if err := os.Rename(m.path("a.txt"), m.path("b.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(m.path("a.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old name after rename: %v, want ENOENT", err)
	}
	m.syncDir(t, ".")
	m.absent(t, "a.txt")
	m.wantObject(t, "b.txt", []byte("content"))
	got := m.metadata(t, "b.txt")
	for k, v := range md {
		if got[k] != v {
			t.Errorf("metadata[%q] = %q after rename, want %q", k, got[k], v)
		}
	}
	if got, err := os.ReadFile(m.path("b.txt")); err != nil || string(got) != "content" {
		t.Fatalf("read after rename: %q %v", got, err)
	}
	if _, err := os.Stat(m.path("a.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat of the old name: %v", err)
	}
	if len(m.st.CallsTo("Copy")) != 1 || len(m.st.CallsTo("UploadPartCopy")) != 0 {
		t.Errorf("want one CopyObject; calls: %+v", m.st.Calls())
	}
}

func TestRenameLargeObjectCopiesParts(t *testing.T) {
	const limit = 6 << 20 // stands for S3's 5 GiB
	st := memstore.New(memstore.Options{MaxPartSize: limit})
	m := newMount(t, st, func(o *Options) { o.MaxCopySize = limit })
	body := testkit.RandomBytes(3, 2*limit+1<<20+3)
	md := store.Metadata{"mode": "33152", "mtime": "1700000000"}
	m.putMultipart(t, "big", body, limit, md)
	st.ResetCalls()

	if err := os.Rename(m.path("big"), m.path("moved")); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	m.absent(t, "big")
	m.wantObject(t, "moved", body)
	if got := m.metadata(t, "moved"); got["mode"] != "33152" || got["mtime"] != "1700000000" {
		t.Errorf("metadata after a multipart copy: %v", got)
	}
	parts := st.CallsTo("UploadPartCopy")
	if len(parts) != 3 || len(st.CallsTo("Copy")) != 0 {
		t.Fatalf("want 3 UploadPartCopy and no Copy; calls: %+v", st.Calls())
	}
	for _, p := range parts {
		if p.Src != "big" || p.Key != "moved" || p.Length > limit || (p.Part < 3 && p.Length != limit) {
			t.Errorf("part %+v", p.Op)
		}
	}

	// chmod of a large object is a multipart copy onto itself.
	st.ResetCalls()
	if err := os.Chmod(m.path("moved"), 0o640); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	if got := m.metadata(t, "moved"); got["mode"] != "33184" || got["mtime"] != "1700000000" {
		t.Errorf("metadata after chmod: %v", got)
	}
	m.wantObject(t, "moved", body)
	if parts := st.CallsTo("UploadPartCopy"); len(parts) != 3 || parts[0].Src != "moved" {
		t.Errorf("chmod calls: %+v", st.Calls())
	}
	if ups := st.Uploads(); len(ups) != 0 {
		t.Errorf("uploads left behind: %v", ups)
	}
}

func TestRenameOverExisting(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "src", []byte("new"), nil)
	m.put(t, "dst", []byte("old"), nil)
	m.put(t, "other", []byte("x"), nil)
	wantErrno(t, "RENAME_NOREPLACE", unix.Renameat2(unix.AT_FDCWD, m.path("src"), unix.AT_FDCWD, m.path("dst"), unix.RENAME_NOREPLACE), syscall.EEXIST)
	wantErrno(t, "RENAME_EXCHANGE", unix.Renameat2(unix.AT_FDCWD, m.path("src"), unix.AT_FDCWD, m.path("dst"), unix.RENAME_EXCHANGE), syscall.EINVAL)
	if err := unix.Renameat2(unix.AT_FDCWD, m.path("other"), unix.AT_FDCWD, m.path("fresh"), unix.RENAME_NOREPLACE); err != nil {
		t.Fatalf("RENAME_NOREPLACE to a free name: %v", err)
	}

	// The replaced file is open for writing: nothing it writes afterwards
	// may reach S3.
	f, err := os.OpenFile(m.path("dst"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("written before"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("src"), m.path("dst")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(" and after"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	m.absent(t, "src")
	m.wantObject(t, "dst", []byte("new"))
	if got, err := os.ReadFile(m.path("dst")); err != nil || string(got) != "new" {
		t.Fatalf("read: %q %v", got, err)
	}
}

func TestRenameOpenFile(t *testing.T) {
	tests := []struct {
		name         string
		before, more []byte
	}{
		{"small", []byte("hello "), []byte("world")},
		// Larger than a part: a multipart upload is under way at rename.
		{"multipart", testkit.RandomBytes(4, 7<<20), testkit.RandomBytes(5, 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMount(t, nil)
			f, err := os.Create(m.path("tmp"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(tt.before); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(m.path("tmp"), m.path("final")); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tt.more); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			m.syncDir(t, ".")
			m.absent(t, "tmp")
			m.wantObject(t, "final", append(append([]byte(nil), tt.before...), tt.more...))
			if ups := m.st.Uploads(); len(ups) != 0 {
				t.Errorf("uploads left behind: %v", ups)
			}
		})
	}
}

// rsync writes a temporary file, closes it, sets its mode and times by path,
// and renames it over the final name.
func TestRenameAfterAttributes(t *testing.T) {
	m := newMount(t, nil)
	tmp, final := m.path(".data.Xa81Qz"), m.path("data")
	if err := os.WriteFile(tmp, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := mustTime(t, "2001-02-03T04:05:06Z")
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	if md := m.metadata(t, "data"); md["mode"] != "33184" || md["mtime"] != "981173106" {
		t.Errorf("metadata: %v", md)
	}
	m2 := newMount(t, m.st)
	fi, err := os.Stat(m2.path("data"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o640 || !fi.ModTime().Equal(mtime) || fi.Size() != 7 {
		t.Errorf("after remount: mode %v mtime %v size %d", fi.Mode(), fi.ModTime(), fi.Size())
	}
}

func TestRenameDir(t *testing.T) {
	m := newMount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o750); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"d/a": "A", "d/sub/b": "B", "d/sub/deeper/c": "C"}
	for k, v := range files {
		m.put(t, k, []byte(v), store.Metadata{"mtime": "1700000000"})
	}
	// Nodes the tree knows, and a descriptor open for reading, move along.
	if _, err := os.Stat(m.path("d/sub/b")); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(m.path("d/sub/deeper/c"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Mkdir(m.path("empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.put(t, "full/x", []byte("x"), nil)
	// os.Rename refuses an existing directory as the target by itself.
	wantErrno(t, "rename over a non-empty directory", syscall.Rename(m.path("d"), m.path("full")), syscall.ENOTEMPTY)

	if err := syscall.Rename(m.path("d"), m.path("empty")); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		m.absent(t, k)
		nk := "empty/" + strings.TrimPrefix(k, "d/")
		m.wantObject(t, nk, []byte(v))
		if md := m.metadata(t, nk); md["mtime"] != "1700000000" {
			t.Errorf("%s: metadata %v", nk, md)
		}
		if got, err := os.ReadFile(m.path(nk)); err != nil || string(got) != v {
			t.Errorf("read %s: %q %v", nk, got, err)
		}
	}
	m.absent(t, "d/")
	if md := m.metadata(t, "empty/"); md["mode"] != "16872" { // the marker of d: S_IFDIR|0750
		t.Errorf("marker: %v", md)
	}
	buf := make([]byte, 10)
	if n, _ := r.ReadAt(buf, 0); string(buf[:n]) != "C" {
		t.Errorf("read through a descriptor opened before the rename: %q", buf[:n])
	}
	if _, err := os.Stat(m.path("d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old directory: %v", err)
	}
}

// An interrupted directory rename loses nothing: no source is deleted before
// every copy exists, and a failed copy leaves the directory where it was.
func TestRenameDirInterrupted(t *testing.T) {
	m := newMount(t, nil)
	src := map[string][]byte{}
	for _, k := range []string{"d/", "d/a", "d/b", "d/s/c", "d/s/t/e", "d/f", "d/g", "d/h"} {
		body := []byte(k)
		if strings.HasSuffix(k, "/") {
			body = nil
		}
		src[k] = body
		m.put(t, k, body, nil)
	}
	moved := func(k string) string { return "e/" + strings.TrimPrefix(k, "d/") }

	var copies atomic.Int32
	m.st.SetFault(func(op memstore.Op) error {
		switch {
		case op.Name == "Copy" && copies.Add(1) == 4:
			return errors.New("connection reset by peer")
		case op.Name == "Delete" && strings.HasPrefix(op.Key, "d/"):
			t.Errorf("source %q deleted by a failed rename", op.Key)
		}
		return nil
	})
	wantErrno(t, "rename with a failing copy", os.Rename(m.path("d"), m.path("e")), syscall.EIO)
	objs := m.st.Objects()
	for k, v := range src {
		if !bytes.Equal(objs[k], v) || objs[k] == nil && v != nil {
			t.Errorf("source %q: %q, want %q", k, objs[k], v)
		}
		if _, ok := objs[moved(k)]; ok {
			t.Errorf("partial copy %q left behind", moved(k))
		}
	}

	// Deletes start only once every copy exists; a failed delete leaves
	// the object at both names.
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name != "Delete" {
			return nil
		}
		objs := m.st.Objects()
		for k := range src {
			if _, ok := objs[moved(k)]; !ok {
				t.Errorf("source %q deleted before the copy %q exists", op.Key, moved(k))
			}
		}
		if op.Key == "d/s/c" {
			return errors.New("service unavailable")
		}
		return nil
	})
	wantErrno(t, "rename with a failing delete", os.Rename(m.path("d"), m.path("e")), syscall.EIO)
	objs = m.st.Objects()
	for k, v := range src {
		if !bytes.Equal(objs[moved(k)], v) {
			t.Errorf("copy %q: %q, want %q", moved(k), objs[moved(k)], v)
		}
	}
	if _, ok := objs["d/s/c"]; !ok {
		t.Error("the source whose delete failed is gone")
	}
}
