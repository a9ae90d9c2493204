package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

func TestWriteSmallFile(t *testing.T) {
	m := newMount(t, nil)
	if err := os.WriteFile(m.path("small.txt"), []byte("hello, S3"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "small.txt"); string(got) != "hello, S3" {
		t.Fatalf("object: %q", got)
	}
	obj, err := m.st.Stat(context.Background(), "small.txt")
	if err != nil {
		t.Fatal(err)
	}
	if obj.Metadata["mode"] != "33184" || obj.Metadata["uid"] != "0" || obj.Metadata["mtime"] == "" { // S_IFREG|0640, written by root
		t.Errorf("metadata %v", obj.Metadata)
	}
	fi, err := os.Stat(m.path("small.txt"))
	if err != nil || fi.Size() != 9 || fi.Mode().Perm() != 0o640 {
		t.Errorf("stat: %v %v", fi, err)
	}
}

func TestWriteLargeFileStreams(t *testing.T) {
	m := newMount(t, nil)
	body := testkit.RandomBytes(6, 23<<20+5)
	f, err := os.Create(m.path("large.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(body); off += 1 << 20 {
		if _, err := f.Write(body[off:min(off+1<<20, len(body))]); err != nil {
			t.Fatal(err)
		}
	}
	// Parts go out while the file is still open.
	if parts := m.st.CallsTo("UploadPart"); len(parts) == 0 {
		t.Errorf("no UploadPart before close")
	}
	if fi, err := os.Stat(m.path("large.bin")); err != nil || fi.Size() != int64(len(body)) {
		t.Errorf("stat while open: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "large.bin"); !bytes.Equal(got, body) {
		t.Fatalf("object has %d bytes, want the %d written", len(got), len(body))
	}
	if got, err := os.ReadFile(m.path("large.bin")); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
}

func TestNewFileVisibleBeforeClose(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("pending"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(m.path("pending"))
	if err != nil || fi.Size() != 5 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "pending" {
		t.Fatalf("readdir: %v %v", entries, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "pending"); string(got) != "12345" {
		t.Fatalf("object: %q", got)
	}
}

func TestTwoHandlesShareOneState(t *testing.T) {
	m := newMount(t, nil)
	w, err := os.OpenFile(m.path("shared"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := os.OpenFile(m.path("shared"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("aaaa"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("bb"), 4); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if n, err := rw.ReadAt(buf, 0); n != 6 || string(buf) != "aaaabb" {
		t.Fatalf("read through the second handle: %q %v", buf[:n], err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "shared"); string(got) != "aaaabb" {
		t.Fatalf("object: %q", got)
	}
}

func TestOverwriteWithTruncate(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "o", []byte("a long original body"), nil)
	if err := os.WriteFile(m.path("o"), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "o"); string(got) != "short" {
		t.Fatalf("object: %q", got)
	}
	// O_TRUNC reaches the file system with OPEN, so the old body is not read.
	if gets := m.st.CallsTo("Get"); len(gets) != 0 {
		t.Errorf("%d GETs for a truncating open", len(gets))
	}
}

func TestAppend(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "log", []byte("line 1\n"), nil)
	f, err := os.OpenFile(m.path("log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("line 2\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "log"); string(got) != "line 1\nline 2\n" {
		t.Fatalf("object: %q", got)
	}
}

func TestTruncatePath(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "t", []byte("0123456789"), nil)
	if err := os.Truncate(m.path("t"), 4); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "t"); string(got) != "0123" {
		t.Fatalf("object after truncate: %q", got)
	}
	if err := os.Truncate(m.path("t"), 0); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "t"); len(got) != 0 {
		t.Fatalf("object after truncate to 0: %q", got)
	}
}

func TestFailedUploadReachesClose(t *testing.T) {
	st := memstore.New(memstore.Options{})
	m := newMount(t, st)
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" && op.Key == "doomed" {
			return store.ErrAccessDenied
		}
		return nil
	})
	f, err := os.Create(m.path("doomed"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("close: %v, want EACCES", err)
	}
	m.absent(t, "doomed")
}

func TestUnlinkWhileOpen(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("scratch")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("tmp")); err != nil {
		t.Fatal(err)
	}
	// The descriptor still works on the nameless file.
	if _, err := f.Write([]byte(" more")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12)
	if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "scratch more" {
		t.Errorf("read of the unlinked file: %q %v", buf[:n], err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.absent(t, "tmp")
	if _, err := os.Stat(m.path("tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat: %v", err)
	}
}

func TestSyncAll(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("not closed yet")); err != nil {
		t.Fatal(err)
	}
	if n := m.root.DirtyCount(); n != 1 {
		t.Errorf("DirtyCount = %d, want 1", n)
	}
	if err := m.root.SyncAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "open"); string(got) != "not closed yet" {
		t.Fatalf("object: %q", got)
	}
	if n := m.root.DirtyCount(); n != 0 {
		t.Errorf("DirtyCount after SyncAll = %d", n)
	}
}

func TestFsyncKeepsHandleUsable(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("fs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "fs"); string(got) != "one" {
		t.Fatalf("object after fsync: %q", got)
	}
	if _, err := f.Write([]byte(" two")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "fs"); string(got) != "one two" {
		t.Fatalf("object after close: %q", got)
	}
}

func TestTimesOfOpenFileAreStored(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("touched"))
	if err != nil {
		t.Fatal(err)
	}
	when := time.Unix(1500000000, 0)
	if err := os.Chtimes(m.path("touched"), when, when); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	obj, err := m.st.Stat(context.Background(), "touched")
	if err != nil || obj.Metadata["mtime"] != "1500000000" {
		t.Fatalf("metadata: %v %v", obj.Metadata, err)
	}
	if fi, err := os.Stat(m.path("touched")); err != nil || !fi.ModTime().Equal(when) {
		t.Errorf("stat: %v %v", fi, err)
	}
}

func TestReadWhileWriting(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "rw", []byte("0123456789"), nil)
	f, err := os.OpenFile(m.path("rw"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("ab"), 10); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(m.path("rw"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "0123456789ab" {
		t.Fatalf("read through another descriptor: %q %v", got, err)
	}
}

func TestTruncateWhileOpenForReading(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "tr", []byte("0123456789"), nil)
	r, err := os.Open(m.path("tr"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Truncate(m.path("tr"), 3); err != nil {
		t.Fatal(err)
	}
	// truncate(2) has no close to wait for: the object changes at once.
	if got := m.object(t, "tr"); string(got) != "012" {
		t.Fatalf("object: %q", got)
	}
}

func TestFsyncDirectory(t *testing.T) {
	m := newMount(t, nil)
	d, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Errorf("fsync of a directory: %v", err)
	}
}

func TestCreateEmptyFile(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.OpenFile(m.path("empty"), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "empty"); len(got) != 0 {
		t.Fatalf("object: %q", got)
	}
	if fi, err := os.Stat(m.path("empty")); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("stat: %v %v", fi, err)
	}
}

func TestShellRedirectKeepsOldObjectUntilWritten(t *testing.T) {
	// sh: open(O_TRUNC), dup2 onto stdout, close the original, then write.
	st := memstore.New(memstore.Options{})
	m := newMount(t, st)
	m.put(t, "f", []byte("old contents"), nil)
	fd, err := syscall.Open(m.path("f"), syscall.O_WRONLY|syscall.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	open := true
	defer func() { // a failing test must not leave the mount busy
		if open {
			syscall.Close(dup)
		}
	}()
	if err := syscall.Close(fd); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "f"); string(got) != "old contents" {
		t.Fatalf("after the first close the object is %q; the old one must stay until the new one is written", got)
	}
	if _, err := syscall.Write(dup, []byte("new")); err != nil {
		t.Fatal(err)
	}
	open = false
	if err := syscall.Close(dup); err != nil {
		t.Fatal(err)
	}
	if got := m.object(t, "f"); string(got) != "new" {
		t.Fatalf("object %q, want %q", got, "new")
	}
}

func TestTruncatingOpenAndCloseEmptiesFile(t *testing.T) {
	// `: > f` stores an empty object, at release.
	st := memstore.New(memstore.Options{})
	m := newMount(t, st)
	m.put(t, "f", []byte("old contents"), nil)
	f, err := os.OpenFile(m.path("f"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for string(m.object(t, "f")) != "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := m.object(t, "f"); len(got) != 0 {
		t.Fatalf("object %q after : > f, want empty", got)
	}
}
