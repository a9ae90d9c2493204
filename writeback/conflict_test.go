package writeback

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

func conflictName(key string) string { return key + ".conflict" }

// putOther stores body under key as another client would.
func putOther(t *testing.T, st store.Store, key string, body []byte) store.Object {
	t.Helper()
	obj, err := st.Put(context.Background(), key, body, store.Sum(body), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Key, obj.Size = key, int64(len(body))
	return obj
}

func wantConflict(t *testing.T, err error, key string) {
	t.Helper()
	var c *ConflictError
	if !errors.As(err, &c) || !errors.Is(err, store.ErrPrecondition) || c.Key != key || c.CopyKey != conflictName(key) {
		t.Fatalf("sync: %v, want a ConflictError for %s wrapping ErrPrecondition", err, key)
	}
}

// A new name another writer stored first: the changes go to the conflict
// copy, exactly as written.
func TestConflictNewName(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{BufferBytes: 64 * mib, ConflictKey: conflictName})
	f := w.Open("k", nil, store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	writeSeq(t, f, []byte("mine"), 0, 4)
	putOther(t, st, "k", []byte("theirs"))
	_, err := f.Sync(context.Background())
	wantConflict(t, err, "k")
	if got := stored(t, st, "k"); string(got) != "theirs" {
		t.Errorf("k: %q", got)
	}
	if got := stored(t, st, "k.conflict"); string(got) != "mine" {
		t.Errorf("conflict copy: %q", got)
	}
	if cs, n := w.Conflicts(); n != 1 || cs[0].CopyKey != "k.conflict" {
		t.Errorf("Conflicts: %v %d", cs, n)
	}
	if _, err := f.Sync(context.Background()); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("a second sync after the conflict: %v, want the conflict again", err)
	}
}

// An edit of a stored object replaced meanwhile, small and multipart: the
// conflict copy is the other writer's version with these edits on top.
func TestConflictEdit(t *testing.T) {
	for _, size := range []int{20 << 10, 40 * mib} {
		st := memstore.New(memstore.Options{})
		w := newWriter(t, st, Options{PartSize: 8 * mib, BufferBytes: 128 * mib, ConflictKey: conflictName})
		base := testkit.RandomBytes(3, size)
		obj := putOther(t, st, "k", base)
		f := w.Open("k", &obj, store.PutOptions{Cond: store.Condition{IfMatch: obj.ETag}})
		mine := []byte("MY EDIT")
		off := int64(size - 5000)
		if _, err := f.WriteAt(context.Background(), mine, off); err != nil {
			t.Fatal(err)
		}
		theirs := bytes.Clone(base)
		copy(theirs[10:], "THEIR EDIT")
		putOther(t, st, "k", theirs)
		_, err := f.Sync(context.Background())
		wantConflict(t, err, "k")
		both := bytes.Clone(theirs)
		copy(both[off:], mine)
		if got := stored(t, st, "k"); !bytes.Equal(got, theirs) {
			t.Errorf("%d bytes: k is not the other writer's version", size)
		}
		if got := stored(t, st, "k.conflict"); !bytes.Equal(got, both) {
			t.Errorf("%d bytes: the conflict copy is not their version with my edit", size)
		}
		if ups := st.Uploads(); len(ups) != 0 {
			t.Errorf("%d bytes: uploads left: %v", size, ups)
		}
	}
}

// Without ConflictKey a lost race is only an error.
func TestConflictNoCopy(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{BufferBytes: 64 * mib})
	f := w.Open("k", nil, store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	writeSeq(t, f, []byte("mine"), 0, 4)
	putOther(t, st, "k", []byte("theirs"))
	_, err := f.Sync(context.Background())
	var c *ConflictError
	if !errors.Is(err, store.ErrPrecondition) || errors.As(err, &c) {
		t.Fatalf("sync: %v, want ErrPrecondition without a copy", err)
	}
	if len(st.Objects()) != 1 {
		t.Errorf("objects: %v", st.Objects())
	}
	if cs, n := w.Conflicts(); n != 1 || cs[0].CopyKey != "" {
		t.Errorf("Conflicts: %v %d", cs, n)
	}
}

// After a sync the file requires the version it stored: another writer's
// version stored in between is a conflict at the next sync.
func TestConflictAfterSync(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{BufferBytes: 64 * mib, ConflictKey: conflictName})
	f := w.Open("k", nil, store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	writeSeq(t, f, []byte("first"), 0, 5)
	mustSync(t, f)
	writeSeq(t, f, []byte("FIRST"), 0, 5)
	mustSync(t, f) // replaces its own version: no conflict
	putOther(t, st, "k", []byte("other"))
	writeSeq(t, f, []byte("third"), 0, 5)
	_, err := f.Sync(context.Background())
	wantConflict(t, err, "k")
	if got := stored(t, st, "k.conflict"); string(got) != "third" {
		t.Errorf("conflict copy: %q", got)
	}
}
