package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// putObject stores n pseudo-random bytes under key and returns them with
// the object.
func putObject(t *testing.T, mem *memstore.Store, key string, n int, seed uint64) ([]byte, store.Object) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	obj, err := mem.Put(context.Background(), key, data, store.Sum(data), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return data, obj
}

// TestResumeFromFirstMissingByte cuts every body at random points and
// checks that the reader gets exactly the stored bytes and that each
// re-request starts where the bytes delivered so far end.
func TestResumeFromFirstMissingByte(t *testing.T) {
	for seed := range uint64(20) {
		mem := memstore.New(memstore.Options{})
		data, obj := putObject(t, mem, "k", 1+int(seed*7919)%100000, seed)
		cuts := rand.New(rand.NewPCG(seed, 1))
		type asked struct{ off, length, cut int64 }
		var log []asked // the hook runs in the reader's goroutine
		mem.SetBodyFault(func(op memstore.Op) memstore.BodyFault {
			a := asked{off: op.Off, length: op.Length, cut: op.Length}
			if cuts.IntN(4) != 0 { // some bodies get through whole
				a.cut = 1 + cuts.Int64N(max(op.Length, 1))
			}
			log = append(log, a)
			return memstore.BodyFault{Cut: a.cut}
		})
		off := int64(cuts.IntN(len(data)))
		got := make([]byte, int64(len(data))-off)
		st := store.WithRetry(mem, fastRetry())
		n, err := store.ReadAt(context.Background(), st, "k", obj.ETag, got, off)
		if err != nil || n != len(got) || !bytes.Equal(got, data[off:]) {
			t.Fatalf("seed %d: read %d of %d bytes at %d: %v (bytes equal: %v)", seed, n, len(got), off, err, bytes.Equal(got, data[off:]))
		}
		want := off
		for i, a := range log {
			if a.off != want || a.length != int64(len(data))-want {
				t.Fatalf("seed %d: Get %d asked for %d bytes at %d, want %d at %d", seed, i, a.length, a.off, int64(len(data))-want, want)
			}
			want += a.cut
		}
		if want != int64(len(data)) {
			t.Fatalf("seed %d: the bodies delivered up to %d of %d", seed, want, len(data))
		}
	}
}

// FuzzResume reads a random range through bodies cut at fuzzed points.
func FuzzResume(f *testing.F) {
	f.Add(uint16(1000), uint16(3), uint16(17), uint16(400))
	f.Add(uint16(1), uint16(0), uint16(1), uint16(1))
	f.Fuzz(func(t *testing.T, size, off, cut, length uint16) {
		if size == 0 {
			return
		}
		mem := memstore.New(memstore.Options{})
		data, obj := putObject(t, mem, "k", int(size), uint64(size))
		start := int64(off) % int64(size)
		n := 1 + int64(length)%(int64(size)-start)
		mem.SetBodyFault(func(memstore.Op) memstore.BodyFault { return memstore.BodyFault{Cut: 1 + int64(cut)%n} })
		got := make([]byte, n)
		if _, err := store.ReadAt(context.Background(), store.WithRetry(mem, fastRetry()), "k", obj.ETag, got, start); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[start:start+n]) {
			t.Fatalf("bytes differ")
		}
	})
}

// A version replaced between a cut and the re-request is
// ErrPrecondition, whether the caller pinned the read or not: the rest is
// pinned to the version the first bytes came from.
func TestResumeNeverMixesVersions(t *testing.T) {
	for _, pinned := range []bool{true, false} {
		mem := memstore.New(memstore.Options{})
		data, obj := putObject(t, mem, "k", 1000, 1)
		etag := ""
		if pinned {
			etag = obj.ETag
		}
		var gets atomic.Int32
		mem.SetBodyFault(func(memstore.Op) memstore.BodyFault {
			if gets.Add(1) == 1 {
				putObject(t, mem, "k", 1000, 2) // replaced after the first body began
				return memstore.BodyFault{Cut: 300}
			}
			return memstore.BodyFault{}
		})
		got := make([]byte, len(data))
		n, err := store.ReadAt(context.Background(), store.WithRetry(mem, fastRetry()), "k", etag, got, 0)
		if !errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("pinned %v: read %d bytes, err %v, want ErrPrecondition", pinned, n, err)
		}
		if !bytes.Equal(got[:n], data[:n]) {
			t.Fatalf("pinned %v: the bytes delivered are not the first version's", pinned)
		}
	}
}

// The budget bounds a stretch without progress: a body cut every few
// bytes reads to the end although it takes longer than the budget, while
// a body that never delivers anything fails once the budget is spent.
func TestResumeBudget(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	data, obj := putObject(t, mem, "k", 400, 3)
	mem.SetBodyFault(func(memstore.Op) memstore.BodyFault { return memstore.BodyFault{Cut: 4} })
	st := store.WithRetry(mem, store.RetryOptions{Budget: 20 * time.Millisecond, Base: time.Millisecond, Max: time.Millisecond})
	start := time.Now()
	got := make([]byte, len(data))
	if _, err := store.ReadAt(context.Background(), st, "k", obj.ETag, got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("slow but steady read: %v", err)
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Logf("the read took %v, less than the budget; the test proves less than it should", took)
	}

	mem.SetBodyFault(nil)
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Get" && op.Off > 0 {
			return store.ErrTransient // the re-request never gets through
		}
		return nil
	})
	mem.SetBodyFault(func(memstore.Op) memstore.BodyFault { return memstore.BodyFault{Cut: 100} })
	start = time.Now()
	n, err := store.ReadAt(context.Background(), st, "k", obj.ETag, got, 0)
	if !errors.Is(err, store.ErrTransient) || n != 100 {
		t.Fatalf("read %d bytes, err %v; want 100 and the transient error", n, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("giving up took %v with a 20ms budget", took)
	}
}

// A stalled body waits for the reader's context, and the error says so
// instead of being retried.
func TestResumeStalledBodyEndsWithContext(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	_, obj := putObject(t, mem, "k", 1000, 4)
	mem.SetBodyFault(func(memstore.Op) memstore.BodyFault { return memstore.BodyFault{Cut: 10, Stall: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := make([]byte, 1000)
	_, err := store.ReadAt(ctx, store.WithRetry(mem, fastRetry()), "k", obj.ETag, got, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
}

// A call the server never answers (Hang) ends with its context.
func TestHangEndsWithContext(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	mem.SetFault(func(memstore.Op) error { return memstore.Hang })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := store.WithRetry(mem, fastRetry()).Stat(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
}

// The budget ends retries of an ordinary call, and the error names the
// operation, the key and the attempts.
func TestRetryBudgetExpires(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	mem.SetFault(func(memstore.Op) error { return store.ErrTransient })
	st := store.WithRetry(mem, store.RetryOptions{Budget: 30 * time.Millisecond, Base: time.Millisecond, Max: 5 * time.Millisecond})
	start := time.Now()
	_, err := st.Stat(context.Background(), "some/key")
	took := time.Since(start)
	if !errors.Is(err, store.ErrTransient) {
		t.Fatalf("err %v", err)
	}
	if took < 30*time.Millisecond || took > 10*time.Second {
		t.Fatalf("gave up after %v with a 30ms budget", took)
	}
	for _, want := range []string{"Stat", `"some/key"`, "giving up after"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("error %q does not name %s", err, want)
		}
	}
	if n := len(mem.Calls()); n < 3 {
		t.Fatalf("%d attempts in the budget", n)
	}
}

// readSizes is a store whose Get bodies record how much each Read asks for.
type readSizes struct {
	store.Store
	asked []int
}

func (s *readSizes) Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key, off, length, etag)
	if err != nil {
		return nil, err
	}
	return &sizedBody{ReadCloser: rc, asked: &s.asked}, nil
}

type sizedBody struct {
	io.ReadCloser
	asked *[]int
}

func (b *sizedBody) Read(p []byte) (int, error) {
	*b.asked = append(*b.asked, len(p))
	return b.ReadCloser.Read(p)
}

// TestReadSpans: every buffer gets its bytes and is reported filled in
// order; buffers that lie end to end in memory are read with one Read, so
// that no read is smaller than what is left of them; an object shorter than
// the buffers fails with io.ErrUnexpectedEOF after reporting the buffers it
// filled.
func TestReadSpans(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	data, obj := putObject(t, mem, "k", 10000, 7)
	whole := make([]byte, 8000)
	tests := []struct {
		name  string
		bufs  [][]byte
		off   int64
		asked []int
	}{
		{"end to end in memory", [][]byte{whole[:3000], whole[3000:5000], whole[5000:8000]}, 100, []int{8000}},
		{"apart in memory", [][]byte{make([]byte, 3000), make([]byte, 2000)}, 0, []int{3000, 2000}},
		{"a gap in memory", [][]byte{whole[:1000], whole[1000:2000], whole[2500:3000]}, 5000, []int{2000, 500}},
		{"an empty buffer", [][]byte{whole[:1000], whole[1000:1000], whole[1000:1500]}, 10, []int{1500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &readSizes{Store: mem}
			var order []int
			n, err := store.ReadSpans(context.Background(), st, "k", obj.ETag, tt.off, tt.bufs, func(i int) { order = append(order, i) })
			off := tt.off
			for i, b := range tt.bufs {
				if !bytes.Equal(b, data[off:off+int64(len(b))]) {
					t.Errorf("buffer %d holds the wrong bytes", i)
				}
				off += int64(len(b))
			}
			if err != nil || n != off-tt.off {
				t.Errorf("ReadSpans = %d, %v; want %d, nil", n, err, off-tt.off)
			}
			if len(order) != len(tt.bufs) || !slices.IsSorted(order) {
				t.Errorf("filled %v, want each buffer in order", order)
			}
			if !slices.Equal(st.asked, tt.asked) {
				t.Errorf("reads asked for %v bytes, want %v", st.asked, tt.asked)
			}
		})
	}
	t.Run("short object", func(t *testing.T) {
		var order []int
		bufs := [][]byte{whole[:1000], whole[1000:2000], whole[2000:3000]}
		n, err := store.ReadSpans(context.Background(), mem, "k", obj.ETag, 8500, bufs, func(i int) { order = append(order, i) })
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != 1500 || !slices.Equal(order, []int{0}) {
			t.Fatalf("ReadSpans past the end = %d, %v, filled %v; want 1500, ErrUnexpectedEOF, [0]", n, err, order)
		}
	})
}
