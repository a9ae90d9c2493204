package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

const testLimit = 6 << 20 // stands for S3's 5 GiB

func putParts(t *testing.T, st *memstore.Store, key string, body []byte, md store.Metadata) store.Object {
	t.Helper()
	ctx := context.Background()
	id, err := st.CreateMultipart(ctx, key, store.PutOptions{Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	var parts []store.Part
	for off, n := 0, int32(1); off < len(body); off, n = off+testLimit, n+1 {
		b := body[off:min(off+testLimit, len(body))]
		p, err := st.UploadPart(ctx, key, id, n, b, store.Sum(b))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	obj, err := st.CompleteMultipart(ctx, key, id, parts, store.Condition{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func TestCopyObject(t *testing.T) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), (2*testLimit+12345)/16)
	co := store.CopyOptions{MaxSingle: testLimit, PartSize: 5 << 20}
	tests := []struct {
		name      string
		body      []byte
		opts      *store.PutOptions
		wantMeta  string
		copies    int // UploadPartCopy calls; 0 means one Copy
		lastRange int64
	}{
		{"small keeps metadata", []byte("small"), nil, "kept", 0, 0},
		{"large keeps metadata", body, nil, "kept", 3, int64(len(body)) - 2*(5<<20)},
		{"large replaces metadata", body, &store.PutOptions{Metadata: store.Metadata{"m": "new"}}, "new", 3, int64(len(body)) - 2*(5<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := memstore.New(memstore.Options{MaxPartSize: testLimit})
			src := putParts(t, st, "src", tt.body, store.Metadata{"m": "kept"})
			st.ResetCalls()
			src.Metadata = nil // as a listing reports it
			obj, err := store.CopyObject(ctx, st, src, "dst", tt.opts, co)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(st.Objects()["dst"], tt.body) || obj.Size != int64(len(tt.body)) || obj.Key != "dst" {
				t.Fatalf("copy: %+v", obj)
			}
			got, err := st.Stat(ctx, "dst")
			// A single Copy of a source whose metadata was not known
			// cannot report it.
			if err != nil || got.Metadata["m"] != tt.wantMeta || (obj.Metadata != nil && obj.Metadata["m"] != tt.wantMeta) {
				t.Errorf("metadata %v (returned %v), want m=%s: %v", got.Metadata, obj.Metadata, tt.wantMeta, err)
			}
			parts := st.CallsTo("UploadPartCopy")
			if len(parts) != tt.copies || (tt.copies == 0 && len(st.CallsTo("Copy")) != 1) {
				t.Fatalf("calls: %+v", st.Calls())
			}
			for i, p := range parts {
				want := int64(5 << 20)
				if int(p.Part) == tt.copies {
					want = tt.lastRange
				}
				if p.Length != want || p.Off != int64(p.Part-1)*(5<<20) {
					t.Errorf("part %d: %+v", i, p.Op)
				}
			}
		})
	}
}

func TestCopyObjectPinnedAndAborted(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{MaxPartSize: testLimit})
	body := bytes.Repeat([]byte{7}, 2*testLimit+1)
	src := putParts(t, st, "src", body, nil)
	co := store.CopyOptions{MaxSingle: testLimit}

	stale := src
	stale.ETag = "0123456789abcdef0123456789abcdef"
	if _, err := store.CopyObject(ctx, st, stale, "dst", &store.PutOptions{}, co); !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("copy of a changed source: %v, want ErrPrecondition", err)
	}

	st.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPartCopy" && op.Part == 2 {
			return store.ErrAccessDenied
		}
		return nil
	})
	if _, err := store.CopyObject(ctx, st, src, "dst", nil, co); !errors.Is(err, store.ErrAccessDenied) {
		t.Errorf("copy with a failing part: %v", err)
	}
	if ups := st.Uploads(); len(ups) != 0 {
		t.Errorf("uploads left behind: %v", ups)
	}
	if _, ok := st.Objects()["dst"]; ok {
		t.Error("a failed copy created dst")
	}
}

// TestCopyObjectInPartsUnderCondition: a copy in parts completes under
// opts.Cond, so a destination another writer created meanwhile is kept.
func TestCopyObjectInPartsUnderCondition(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{MaxPartSize: testLimit})
	body := bytes.Repeat([]byte{7}, 2*testLimit+1)
	src := putParts(t, st, "src", body, nil)
	co := store.CopyOptions{MaxSingle: testLimit}
	cond := &store.PutOptions{Cond: store.Condition{IfNoneMatch: true}}
	st.ResetCalls()

	theirs := []byte("another writer's")
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "CompleteMultipart" {
			if _, err := st.Put(ctx, "dst", theirs, store.Sum(theirs), store.PutOptions{}); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	if _, err := store.CopyObject(ctx, st, src, "dst", cond, co); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("copy If-None-Match onto a key created meanwhile: %v, want ErrPrecondition", err)
	}
	if got := st.Objects()["dst"]; !bytes.Equal(got, theirs) {
		t.Fatalf("dst holds %d bytes, want the other writer's", len(got))
	}
	if ups := st.Uploads(); len(ups) != 0 {
		t.Errorf("uploads left behind: %v", ups)
	}
	creates := st.CallsTo("CreateMultipart")
	if len(creates) != 1 || !creates[0].Cond.IfNoneMatch {
		t.Errorf("CreateMultipart calls %+v; want one under If-None-Match", creates)
	}

	st.SetFault(nil)
	if _, err := store.CopyObject(ctx, st, src, "fresh", cond, co); err != nil {
		t.Fatalf("copy If-None-Match onto a fresh key: %v", err)
	}
	if !bytes.Equal(st.Objects()["fresh"], body) {
		t.Fatal("fresh does not hold the source's bytes")
	}
}
