package memstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

func TestBodiesAreCopied(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	buf := []byte("hello")
	if _, err := s.Put(ctx, "k", buf, store.Sum(buf), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX")
	if got := s.Objects()["k"]; string(got) != "hello" {
		t.Fatalf("stored body changed with the caller's buffer: %q", got)
	}
}

func TestTooLarge(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{MaxPartSize: 8})
	big := []byte("123456789")
	if _, err := s.Put(ctx, "k", big, store.Sum(big), store.PutOptions{}); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Put above the limit: %v, want ErrTooLarge", err)
	}
	id, err := s.CreateMultipart(ctx, "m", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "m", id, 1, big, store.Sum(big)); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("UploadPart above the limit: %v, want ErrTooLarge", err)
	}
	small := []byte("1234")
	if _, err := s.Put(ctx, "src", small, store.Sum(small), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPartCopy(ctx, "m", id, 1, "src", "", 0, 9); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("UploadPartCopy above the limit: %v, want ErrTooLarge", err)
	}
	if _, err := s.UploadPartCopy(ctx, "m", id, 1, "src", "", 2, 3); err == nil {
		t.Fatal("UploadPartCopy past the end of the source succeeded")
	}
}

func TestFaultsAndCallLog(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	failures := 0
	s.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPart" && op.Part == 2 && failures < 1 {
			failures++
			return store.ErrTransient
		}
		return nil
	})
	id, err := s.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1 := bytes.Repeat([]byte{1}, int(store.MinPartSize))
	p2 := []byte("tail")
	part1, err := s.UploadPart(ctx, "k", id, 1, p1, store.Sum(p1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadPart(ctx, "k", id, 2, p2, store.Sum(p2)); !errors.Is(err, store.ErrTransient) {
		t.Fatalf("injected fault: %v, want ErrTransient", err)
	}
	if got := s.Uploads(); len(got) != 1 || got[0].UploadID != id {
		t.Fatalf("Uploads() = %v, want the one open upload", got)
	}
	part2, err := s.UploadPart(ctx, "k", id, 2, p2, store.Sum(p2))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Parts(id); len(got) != 2 {
		t.Fatalf("Parts() = %v, want two", got)
	}

	// A lost reply: the upload completes but the caller sees an error.
	s.SetFaultAfter(func(op memstore.Op) error {
		if op.Name == "CompleteMultipart" {
			return store.ErrTransient
		}
		return nil
	})
	if _, err := s.CompleteMultipart(ctx, "k", id, []store.Part{part1, part2}, store.Condition{}); !errors.Is(err, store.ErrTransient) {
		t.Fatalf("lost reply: %v, want ErrTransient", err)
	}
	s.SetFaultAfter(nil)
	if _, err := s.Stat(ctx, "k"); err != nil {
		t.Fatalf("object missing after a complete whose reply was lost: %v", err)
	}

	var names []string
	for _, c := range s.Calls() {
		names = append(names, c.Name)
	}
	want := []string{"CreateMultipart", "UploadPart", "UploadPart", "UploadPart", "CompleteMultipart", "Stat"}
	if !slices.Equal(names, want) {
		t.Fatalf("call log %v, want %v", names, want)
	}
	ups := s.CallsTo("UploadPart")
	if len(ups) != 2 || ups[0].Part != 1 || ups[1].Part != 2 || ups[1].Size != 4 || ups[1].MD5 != store.Sum(p2) {
		t.Fatalf("successful UploadParts %+v", ups)
	}
	s.ResetCalls()
	if len(s.Calls()) != 0 {
		t.Fatal("ResetCalls left entries")
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := memstore.New(memstore.Options{})
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stat with a canceled context: %v", err)
	}
}

// A key equal to the listing prefix must not hide the keys after it when a
// page ends on it.
func TestListTokenAfterPrefixKey(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	for _, k := range []string{"a/", "a/b", "a/c/d"} {
		if _, err := s.Put(ctx, k, nil, store.Sum(nil), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	for {
		page, err := s.List(ctx, "a/", "/", token, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Objects {
			got = append(got, o.Key)
		}
		got = append(got, page.Prefixes...)
		if token = page.Next; token == "" {
			break
		}
	}
	if want := []string{"a/", "a/b", "a/c/"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

func TestGetReaderIsIndependent(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(memstore.Options{})
	body := []byte("0123456789")
	if _, err := s.Put(ctx, "k", body, store.Sum(body), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "k", 2, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	other := []byte("abcdefghij")
	if _, err := s.Put(ctx, "k", other, store.Sum(other), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "234" {
		t.Fatalf("open reader saw %q after an overwrite, want the old bytes", got)
	}
}
