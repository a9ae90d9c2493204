package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// failFirst returns a fault hook failing the first n calls to the named
// method with a transient error.
func failFirst(name string, n int) func(memstore.Op) error {
	var seen atomic.Int32
	return func(op memstore.Op) error {
		if op.Name == name && int(seen.Add(1)) <= n {
			return store.ErrTransient
		}
		return nil
	}
}

func fastRetry(extra ...func(*store.RetryOptions)) store.RetryOptions {
	o := store.RetryOptions{Base: time.Millisecond, Max: 4 * time.Millisecond}
	for _, f := range extra {
		f(&o)
	}
	return o
}

func TestRetryTransientThenSuccess(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	var logs bytes.Buffer
	var retries atomic.Int32
	st := store.WithRetry(mem, fastRetry(func(o *store.RetryOptions) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.OnRetry = func(op string) {
			if op == "UploadPart" {
				retries.Add(1)
			}
		}
	}))

	id, err := st.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mem.SetFault(failFirst("UploadPart", 2))
	body := []byte("part body")
	p, err := st.UploadPart(ctx, "k", id, 3, body, store.Sum(body))
	if err != nil {
		t.Fatalf("UploadPart after two transient failures: %v", err)
	}
	if p.Number != 3 || p.Size != int64(len(body)) {
		t.Fatalf("part %+v", p)
	}
	var calls []memstore.Call
	for _, c := range mem.Calls() {
		if c.Name == "UploadPart" {
			calls = append(calls, c)
		}
	}
	if len(calls) != 3 {
		t.Fatalf("%d UploadPart calls, want 3", len(calls))
	}
	for _, c := range calls {
		if c.Part != 3 || c.Size != int64(len(body)) || c.MD5 != store.Sum(body) {
			t.Fatalf("a retry sent something else: %+v", c)
		}
	}
	if got := retries.Load(); got != 2 {
		t.Fatalf("OnRetry called %d times, want 2", got)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "attempt=3") ||
		!strings.Contains(logs.String(), "part=3") {
		t.Fatalf("retry log missing fields:\n%s", logs.String())
	}
}

func TestRetryGivesUp(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	mem.SetFault(failFirst("Stat", 100))
	st := store.WithRetry(mem, fastRetry(func(o *store.RetryOptions) { o.Attempts = 4 }))
	_, err := st.Stat(context.Background(), "k")
	if !errors.Is(err, store.ErrTransient) {
		t.Fatalf("err %v, want the last transient error", err)
	}
	if n := len(mem.Calls()); n != 4 {
		t.Fatalf("%d calls, want 4", n)
	}
}

func TestRetryNotForPermanentErrors(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	st := store.WithRetry(mem, fastRetry())
	body := []byte("v1")
	obj, err := st.Put(ctx, "k", body, store.Sum(body), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v2 := []byte("v2")
	if _, err := st.Put(ctx, "k", v2, store.Sum(v2), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"NoSuchUpload", func() error {
			_, err := st.UploadPart(ctx, "k", "no-such-id", 1, body, store.Sum(body))
			return err
		}, store.ErrNoSuchUpload},
		{"Precondition", func() error {
			_, err := st.Get(ctx, "k", 0, -1, obj.ETag)
			return err
		}, store.ErrPrecondition},
		{"NotExist", func() error {
			_, err := st.Stat(ctx, "missing")
			return err
		}, store.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem.ResetCalls()
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if n := len(mem.Calls()); n != 1 {
				t.Fatalf("%d calls, want 1 (no retry)", n)
			}
		})
	}
}

func TestRetryStopsWhenContextDone(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	mem.SetFault(failFirst("Stat", 100))
	st := store.WithRetry(mem, store.RetryOptions{Base: time.Hour, Max: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err := st.Stat(ctx, "k")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, store.ErrTransient) {
		t.Fatalf("err %v, want both the cancellation and the last error", err)
	}
	if n := len(mem.Calls()); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

func TestRetryGetOpening(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	body := []byte("0123456789")
	if _, err := mem.Put(ctx, "k", body, store.Sum(body), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	mem.SetFault(failFirst("Get", 2))
	rc, err := store.WithRetry(mem, fastRetry()).Get(ctx, "k", 3, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); string(got) != "3456" {
		t.Fatalf("read %q", got)
	}
}

// A complete or abort whose reply was lost must not turn into a failure
// when the retry finds the upload gone.
func TestRetryLostReplies(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	st := store.WithRetry(mem, fastRetry())
	lostOnce := func(name string) func(memstore.Op) error {
		var done atomic.Bool
		return func(op memstore.Op) error {
			if op.Name == name && !done.Swap(true) {
				return store.ErrTransient
			}
			return nil
		}
	}

	id, err := st.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1 := bytes.Repeat([]byte{7}, int(store.MinPartSize))
	p2 := []byte("end")
	part1, err := st.UploadPart(ctx, "k", id, 1, p1, store.Sum(p1))
	if err != nil {
		t.Fatal(err)
	}
	part2, err := st.UploadPart(ctx, "k", id, 2, p2, store.Sum(p2))
	if err != nil {
		t.Fatal(err)
	}
	mem.SetFaultAfter(lostOnce("CompleteMultipart"))
	obj, err := st.CompleteMultipart(ctx, "k", id, []store.Part{part1, part2}, store.Condition{})
	if err != nil {
		t.Fatalf("complete with a lost reply: %v", err)
	}
	if obj.Size != int64(len(p1)+len(p2)) || !strings.HasSuffix(obj.ETag, "-2") {
		t.Fatalf("completed object %+v", obj)
	}

	// A retry that finds some other object must still fail.
	id, err = st.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UploadPart(ctx, "k", id, 1, p2, store.Sum(p2)); err != nil {
		t.Fatal(err)
	}
	mem.SetFaultAfter(nil)
	var vanished atomic.Bool
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "CompleteMultipart" && !vanished.Swap(true) {
			// The upload vanishes and the attempt fails transiently.
			_ = mem.AbortMultipart(ctx, "k", id)
			return store.ErrTransient
		}
		return nil
	})
	if _, err := st.CompleteMultipart(ctx, "k", id, []store.Part{{Number: 1, ETag: obj.ETag}}, store.Condition{}); !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("complete of a vanished upload: %v, want ErrNoSuchUpload", err)
	}
	mem.SetFault(nil)

	id, err = st.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mem.SetFaultAfter(lostOnce("AbortMultipart"))
	if err := st.AbortMultipart(ctx, "k", id); err != nil {
		t.Fatalf("abort with a lost reply: %v", err)
	}
	mem.SetFaultAfter(nil)
	if err := st.AbortMultipart(ctx, "k", id); !errors.Is(err, store.ErrNoSuchUpload) {
		t.Fatalf("second abort: %v, want ErrNoSuchUpload", err)
	}
}

// TestRetryConditionalLostReplies: a conditional write whose reply was lost
// finds its own object when retried and fails its condition; the retry
// must recognise the object as its own, and only its own.
func TestRetryConditionalLostReplies(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	st := store.WithRetry(mem, fastRetry())
	lostOnce := func(name string) func(memstore.Op) error {
		var done atomic.Bool
		return func(op memstore.Op) error {
			if op.Name == name && !done.Swap(true) {
				return store.ErrTransient
			}
			return nil
		}
	}
	v1, v2 := []byte("version 1"), []byte("version 2")

	mem.SetFaultAfter(lostOnce("Put"))
	obj, err := st.Put(ctx, "k", v1, store.Sum(v1), store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	if err != nil || obj.ETag != md5hex(v1) {
		t.Fatalf("Put If-None-Match with a lost reply: %+v, %v", obj, err)
	}
	mem.SetFaultAfter(lostOnce("Put"))
	obj, err = st.Put(ctx, "k", v2, store.Sum(v2), store.PutOptions{Cond: store.Condition{IfMatch: obj.ETag}})
	if err != nil || obj.ETag != md5hex(v2) {
		t.Fatalf("Put If-Match with a lost reply: %+v, %v", obj, err)
	}
	if got := mem.Objects()["k"]; string(got) != string(v2) {
		t.Fatalf("object holds %q, want %q", got, v2)
	}

	// A complete whose retry meets its own object: S3 answers
	// NoSuchUpload, MinIO checks the condition first and answers 412.
	for _, retryAnswer := range []error{nil, store.ErrPrecondition} {
		mem.SetFault(nil)
		id, err := st.CreateMultipart(ctx, "m", store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		part, err := st.UploadPart(ctx, "m", id, 1, v1, store.Sum(v1))
		if err != nil {
			t.Fatal(err)
		}
		if err := mem.Delete(ctx, "m"); err != nil {
			t.Fatal(err)
		}
		mem.SetFaultAfter(lostOnce("CompleteMultipart"))
		var completes atomic.Int32
		mem.SetFault(func(op memstore.Op) error {
			if op.Name == "CompleteMultipart" && completes.Add(1) > 1 {
				return retryAnswer
			}
			return nil
		})
		obj, err := st.CompleteMultipart(ctx, "m", id, []store.Part{part}, store.Condition{IfNoneMatch: true})
		if err != nil || !strings.HasSuffix(obj.ETag, "-1") {
			t.Fatalf("complete If-None-Match with a lost reply, retry answered %v: %+v, %v", retryAnswer, obj, err)
		}
	}
	mem.SetFault(nil)
	mem.SetFaultAfter(nil)

	// Another writer's object makes the retry fail, as it must.
	other := []byte("another writer")
	var once atomic.Bool
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" && op.Key == "n" && !once.Swap(true) {
			if _, err := mem.Put(ctx, "n", other, store.Sum(other), store.PutOptions{}); err != nil {
				t.Error(err)
			}
			return store.ErrTransient
		}
		return nil
	})
	_, err = st.Put(ctx, "n", v1, store.Sum(v1), store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	if !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("Put If-None-Match retried after another writer's Put: %v, want ErrPrecondition", err)
	}
	if got := mem.Objects()["n"]; string(got) != string(other) {
		t.Fatalf("object holds %q, want the other writer's", got)
	}
}

func md5hex(b []byte) string {
	sum := store.Sum(b)
	return hex.EncodeToString(sum[:])
}
