package memstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// conditionalWrites runs each kind of conditional write once on s, each
// against a condition that cannot hold, and returns what each answered.
func conditionalWrites(t *testing.T, s *memstore.Store) map[string]error {
	t.Helper()
	ctx := context.Background()
	v1 := []byte("version 1")
	if _, err := s.Put(ctx, "k", v1, store.Sum(v1), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	v2 := []byte("version 2")
	stale := store.Condition{IfMatch: "0123456789abcdef0123456789abcdef"}
	exists := store.Condition{IfNoneMatch: true}
	got := map[string]error{}
	_, got["Put If-None-Match"] = s.Put(ctx, "k", v2, store.Sum(v2), store.PutOptions{Cond: exists})
	_, got["Put If-Match"] = s.Put(ctx, "k", v2, store.Sum(v2), store.PutOptions{Cond: stale})
	_, got["CreateMultipart"] = s.CreateMultipart(ctx, "k", store.PutOptions{Cond: exists})

	id, err := s.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.UploadPart(ctx, "k", id, 1, v2, store.Sum(v2))
	if err != nil {
		t.Fatal(err)
	}
	_, got["CompleteMultipart"] = s.CompleteMultipart(ctx, "k", id, []store.Part{p}, exists)
	got["DeleteIfMatch"] = s.DeleteIfMatch(ctx, "k", stale.IfMatch)
	return got
}

func TestConditionModes(t *testing.T) {
	tests := []struct {
		name string
		opts memstore.Options
		want error // nil: every write succeeds
	}{
		{"enforced", memstore.Options{}, store.ErrPrecondition},
		{"ignored", memstore.Options{IgnoreConditions: true}, nil},
		{"rejected", memstore.Options{RejectConditions: true}, store.ErrNotImplemented},
		{"rejected wins", memstore.Options{IgnoreConditions: true, RejectConditions: true}, store.ErrNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for op, err := range conditionalWrites(t, memstore.New(tt.opts)) {
				if tt.want == nil && err != nil {
					t.Errorf("%s: %v, want success", op, err)
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("%s: %v, want %v", op, err, tt.want)
				}
			}
		})
	}
}

// TestConditionIgnoredOverwrites shows what a server without conditional
// writes does: the write that should have failed replaces the object.
func TestConditionIgnoredOverwrites(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{IgnoreConditions: true})
	a, b := []byte("a"), []byte("b")
	if _, err := s.Put(ctx, "k", a, store.Sum(a), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "k", b, store.Sum(b), store.PutOptions{Cond: store.Condition{IfNoneMatch: true}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Objects()["k"]; string(got) != "b" {
		t.Fatalf("object holds %q, want the ignored write's %q", got, b)
	}
	if err := s.DeleteIfMatch(ctx, "k", "0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Objects()["k"]; ok {
		t.Fatal("DeleteIfMatch with a wrong ETag kept the object although conditions are ignored")
	}
}

// TestConditionAtCompletion checks that CompleteMultipart judges its
// condition against the object current when it runs, and that a failed
// condition leaves the upload open for the caller to abort.
func TestConditionAtCompletion(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	body := []byte("part")
	id, err := s.CreateMultipart(ctx, "k", store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.UploadPart(ctx, "k", id, 1, body, store.Sum(body))
	if err != nil {
		t.Fatal(err)
	}
	other := []byte("another writer")
	if _, err := s.Put(ctx, "k", other, store.Sum(other), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.CompleteMultipart(ctx, "k", id, []store.Part{p}, store.Condition{IfNoneMatch: true})
	if !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("CompleteMultipart If-None-Match after another writer: %v, want ErrPrecondition", err)
	}
	if len(s.Uploads()) != 1 {
		t.Fatalf("uploads after a failed condition: %v, want the upload still open", s.Uploads())
	}
	if got := s.Objects()["k"]; string(got) != string(other) {
		t.Fatalf("object holds %q after a failed condition", got)
	}
	// A missing upload is reported before the condition, as S3 does.
	_, err = s.CompleteMultipart(ctx, "k", "no-such-upload", []store.Part{p}, store.Condition{IfNoneMatch: true})
	if !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("CompleteMultipart of an unknown upload under a failing condition: %v, want ErrNoSuchUpload", err)
	}
	calls := s.CallsTo("CreateMultipart")
	if len(calls) != 1 || !calls[0].Cond.IfNoneMatch {
		t.Fatalf("call log of CreateMultipart %+v; want its condition recorded", calls)
	}
}
