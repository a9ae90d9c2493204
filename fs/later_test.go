package fs

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// callNames lists the store calls made since the last reset, as
// "Name key" strings.
func callNames(st *memstore.Store) []string {
	var out []string
	for _, c := range st.Calls() {
		out = append(out, c.Name+" "+c.Key)
	}
	return out
}

// TestRsyncPattern runs what rsync does for each file it sends: create a
// temporary name, write, close, set the mode and the times, rename onto the
// final name. With the mount's caches on, that costs one PutObject and one
// CopyObject (carrying the final mode and times) in rsync's path and one
// DeleteObject of the old name after, and no HEAD at all.
func TestRsyncPattern(t *testing.T) {
	m := newMount(t, nil, func(o *Options) {
		o.AttrTimeout, o.EntryTimeout, o.NegativeTimeout = time.Second, time.Second, time.Second
		o.StatTTL, o.NegativeTTL = time.Minute, time.Minute
		o.MetadataDelay = time.Hour // only a durability point or the rename writes them
	})
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, "d")
	m.st.ResetCalls()
	mtime := time.Unix(1600000000, 0)
	for i := range 5 {
		name := "f" + string(rune('a'+i)) + ".txt"
		tmp := m.path("d/." + name + ".Xa1b2c")
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("contents of " + name); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tmp, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, m.path("d/"+name)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(m.path("d/" + name))
		if err != nil || fi.Mode() != 0o640 || !fi.ModTime().Equal(mtime) {
			t.Fatalf("after rename: %v %v", fi, err)
		}
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the temporary name after rename: %v, want ENOENT", err)
		}
	}
	m.syncDir(t, "d")
	counts := map[string]int{}
	for _, c := range m.st.Calls() {
		counts[c.Name]++
	}
	if counts["Put"] != 5 || counts["Copy"] != 5 || counts["Delete"] != 5 || counts["Stat"] != 0 {
		t.Errorf("calls for 5 files: %v, want 5 Put, 5 Copy, 5 Delete and no Stat:\n%s", counts, strings.Join(callNames(m.st), "\n"))
	}
	for i := range 5 {
		name := "f" + string(rune('a'+i)) + ".txt"
		m.wantObject(t, "d/"+name, []byte("contents of "+name))
		md := m.metadata(t, "d/"+name)
		if md["mode"] != "33184" || md["mtime"] != "1600000000" {
			t.Errorf("%s: metadata %v", name, md)
		}
		m.absent(t, "d/."+name+".Xa1b2c")
	}
}

// A metadata change that nothing carries is written on its own after
// MetadataDelay, with one copy however many changes came in a row.
func TestMetadataDelay(t *testing.T) {
	m := newMount(t, nil, func(o *Options) { o.MetadataDelay = 50 * time.Millisecond })
	m.put(t, "f", []byte("data"), nil)
	p := m.path("f")
	for _, mode := range []os.FileMode{0o600, 0o640, 0o604} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, "the mode stored", func() bool { return m.metadata(t, "f")["mode"] == "33156" })
	if n := len(m.st.CallsTo("Copy")); n != 1 {
		t.Errorf("three chmods cost %d copies, want 1", n)
	}
}

// The delete of a renamed file's old name runs after rename returns; a new
// file created under the old name meanwhile must survive it.
func TestRenameThenRecreateOldName(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "a", []byte("first"), nil)
	release := make(chan struct{})
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name == "Delete" && op.Key == "a" {
			<-release
		}
		return nil
	})
	if err := os.Rename(m.path("a"), m.path("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.path("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name after rename: %v", err)
	}
	names, err := os.ReadDir(m.dir)
	if err != nil || len(names) != 1 || names[0].Name() != "b" {
		t.Fatalf("readdir after rename: %v %v, want only b", names, err)
	}
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(m.path("a"), []byte("second"), 0o644) }()
	select {
	case err := <-done:
		t.Fatalf("create of the old name returned (%v) while its delete was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	m.wantObject(t, "a", []byte("second"))
	m.wantObject(t, "b", []byte("first"))
}

// A delete of an old name that fails is reported by fsync of the directory
// and by SyncAll, which tries it again.
func TestRenameDeleteFails(t *testing.T) {
	m := newMount(t, nil)
	m.put(t, "a", []byte("first"), nil)
	var fail atomic.Bool
	fail.Store(true)
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name == "Delete" && fail.Load() {
			return store.ErrAccessDenied
		}
		return nil
	})
	if err := os.Rename(m.path("a"), m.path("b")); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err == nil {
		t.Error("fsync of the directory succeeded while the old name could not be deleted")
	}
	if err := m.root.SyncAll(context.Background()); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("SyncAll: %v, want an error naming a", err)
	}
	fail.Store(false)
	if err := m.root.SyncAll(context.Background()); err != nil {
		t.Errorf("SyncAll once deletes work: %v", err)
	}
	m.absent(t, "a")
}

func fastClose(o *Options) {
	o.FastClose = true
	o.AttrTimeout, o.EntryTimeout, o.NegativeTimeout = time.Second, time.Second, time.Second
	o.StatTTL, o.NegativeTTL = time.Minute, time.Minute
	o.MetadataDelay = time.Hour
}

// writeTemp does what rsync does for one file: a temporary name, written
// and closed, its mode and times set, renamed onto name.
func writeTemp(t *testing.T, dir, name, body string, mtime time.Time) {
	t.Helper()
	tmp := dir + "/." + name + ".Xa1b2c"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir+"/"+name); err != nil {
		t.Fatal(err)
	}
}

// With fast close, rsync's temporary file is uploaded once, under its final
// name, with its final mode and times, and nothing else is sent for it.
func TestFastCloseRsyncPattern(t *testing.T) {
	m := newMount(t, nil, fastClose)
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.st.ResetCalls()
	mtime := time.Unix(1600000000, 0)
	for i := range 5 {
		name := "f" + string(rune('a'+i)) + ".txt"
		writeTemp(t, m.path("d"), name, "contents of "+name, mtime)
		got, err := os.ReadFile(m.path("d/" + name))
		if err != nil || string(got) != "contents of "+name {
			t.Fatalf("read back before the upload: %q %v", got, err)
		}
	}
	m.syncDir(t, "d")
	var calls []string
	for _, c := range m.st.Calls() {
		calls = append(calls, c.Name+" "+c.Key)
	}
	if len(calls) != 5 {
		t.Errorf("calls for 5 files: want 5 Puts under the final names:\n%s", strings.Join(calls, "\n"))
	}
	for i := range 5 {
		name := "f" + string(rune('a'+i)) + ".txt"
		m.wantObject(t, "d/"+name, []byte("contents of "+name))
		if md := m.metadata(t, "d/"+name); md["mode"] != "33184" || md["mtime"] != "1600000000" {
			t.Errorf("%s: metadata %v", name, md)
		}
	}
}

// With fast close, close returns while the upload waits; reads, stats and
// listings show the file; fsync waits for the upload; a file removed before
// its upload is never uploaded.
func TestFastCloseBeforeUpload(t *testing.T) {
	m := newMount(t, nil, fastClose)
	release := make(chan struct{})
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" && op.Key == "held" {
			<-release
		}
		return nil
	})
	if err := os.WriteFile(m.path("held"), []byte("held back"), 0o644); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got, err := os.ReadFile(m.path("held")); err != nil || string(got) != "held back" {
		t.Fatalf("read while the upload waits: %q %v", got, err)
	}
	if fi, err := os.Stat(m.path("held")); err != nil || fi.Size() != 9 {
		t.Fatalf("stat while the upload waits: %v %v", fi, err)
	}
	if names, err := os.ReadDir(m.dir); err != nil || len(names) != 1 || names[0].Name() != "held" {
		t.Fatalf("readdir while the upload waits: %v %v", names, err)
	}
	if err := os.WriteFile(m.path("gone"), []byte("never stored"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("gone")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(m.path("held"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	select {
	case err := <-synced:
		t.Fatalf("fsync returned (%v) before the upload", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-synced; err != nil {
		t.Fatalf("fsync: %v", err)
	}
	m.wantObject(t, "held", []byte("held back"))
	m.syncDir(t, ".")
	for _, c := range m.st.CallsTo("Put") {
		if c.Key == "gone" {
			t.Errorf("a file removed before its upload was uploaded")
		}
	}
	m.absent(t, "gone")
}

// A background upload that fails is reported by fsync of the directory and
// by the file's next close; the bytes stay for a later sync, and SyncAll
// names the file while S3 refuses it.
func TestFastCloseUploadFails(t *testing.T) {
	m := newMount(t, nil, fastClose)
	var fail atomic.Bool
	fail.Store(true)
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" && fail.Load() {
			return store.ErrAccessDenied
		}
		return nil
	})
	if err := os.WriteFile(m.path("f"), []byte("kept"), 0o644); err != nil {
		t.Fatalf("close: %v", err)
	}
	d, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err == nil {
		t.Error("fsync of the directory succeeded while the upload fails")
	}
	if err := m.root.SyncAll(context.Background()); err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Errorf("SyncAll: %v, want an error naming f", err)
	}
	if got, err := os.ReadFile(m.path("f")); err != nil || string(got) != "kept" {
		t.Errorf("read after the failure: %q %v", got, err)
	}
	fail.Store(false)
	if err := m.root.SyncAll(context.Background()); err != nil {
		t.Errorf("SyncAll once S3 takes it: %v", err)
	}
	m.wantObject(t, "f", []byte("kept"))
}

// With conditional deletes, the delete of a renamed file's old name keeps
// a version another client stored there after the copy.
func TestRenameKeepsNewerOldName(t *testing.T) {
	m := newMount(t, nil, func(o *Options) { o.Conditional, o.ConditionalDelete = true, true })
	m.put(t, "a", []byte("first"), nil)
	release := make(chan struct{})
	m.st.SetFault(func(op memstore.Op) error {
		if op.Name == "DeleteIfMatch" && op.Key == "a" {
			<-release
		}
		return nil
	})
	if err := os.Rename(m.path("a"), m.path("b")); err != nil {
		t.Fatal(err)
	}
	m.put(t, "a", []byte("another client's"), nil)
	close(release)
	m.syncDir(t, ".")
	m.wantObject(t, "a", []byte("another client's"))
	m.wantObject(t, "b", []byte("first"))
}

// With Conditional, a write of a name another client stored first fails
// with ESTALE, and mkdir of a name made meanwhile with EEXIST.
func TestConditionalCreate(t *testing.T) {
	m := newMount(t, nil, func(o *Options) { o.Conditional = true })
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("mine")
	m.put(t, "f", []byte("theirs"), nil)
	if err := f.Close(); !errors.Is(err, syscall.ESTALE) {
		t.Errorf("close after another client stored the name: %v, want ESTALE", err)
	}
	m.wantObject(t, "f", []byte("theirs"))
	conditional := 0
	for _, c := range m.st.Calls() { // refused calls too
		if c.Name == "Put" && c.Key == "f" && c.Cond.IfNoneMatch {
			conditional++
		}
	}
	if conditional != 1 {
		t.Errorf("%d Puts of f with If-None-Match, want this mount's one", conditional)
	}
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	m.put(t, "e/", nil, nil) // made by another client after this mount looked
	if err := os.Mkdir(m.path("e"), 0o755); !errors.Is(err, os.ErrExist) {
		t.Errorf("mkdir of a name another client made: %v, want EEXIST", err)
	}
}

// Times set on a file whose multipart upload is already under way (cp -p
// sets them before close) reach S3 by a copy after the upload.
func TestTimesSetDuringMultipartUpload(t *testing.T) {
	m := newMount(t, nil)
	f, err := os.Create(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(testkit.RandomBytes(9, 12<<20)); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1500000000, 0)
	if err := os.Chtimes(m.path("big"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.syncDir(t, ".")
	if md := m.metadata(t, "big"); md["mtime"] != "1500000000" {
		t.Errorf("mtime stored: %q, want the one set before close", md["mtime"])
	}
}
