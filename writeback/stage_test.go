package writeback

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// The staged tests use 16 KiB parts doubling every 4 parts: parts 1-4 are
// 16 KiB, 5-8 32 KiB, 9-12 64 KiB, 13-16 128 KiB and 17-20 256 KiB, 1984 KiB
// in all. With a budget under 128 KiB only parts 1-4 are buffered whole.
const (
	stagePart   = 16 << 10
	stagePrefix = "m/.partfs-stage/"
)

func stagedOptions(budget int64) Options {
	return Options{PartSize: stagePart, BufferBytes: budget, Concurrency: 3, StagePrefix: stagePrefix,
		minPartSize: stagePart, maxParts: 20, planStep: 4}
}

// etagLog records the ETags that staged parts are completed with and copied
// under, to check that each copy is pinned to the object it copies.
type etagLog struct {
	*memstore.Store
	mu        sync.Mutex
	completed map[string]string // key -> ETag from CompleteMultipart
	pinned    map[string]string // UploadPartCopy source -> the ETag it was pinned to
}

func newETagLog(st *memstore.Store) *etagLog {
	return &etagLog{Store: st, completed: map[string]string{}, pinned: map[string]string{}}
}

func (e *etagLog) CompleteMultipart(ctx context.Context, key, id string, parts []store.Part, cond store.Condition) (store.Object, error) {
	obj, err := e.Store.CompleteMultipart(ctx, key, id, parts, cond)
	if err == nil {
		e.mu.Lock()
		e.completed[key] = obj.ETag
		e.mu.Unlock()
	}
	return obj, err
}

func (e *etagLog) UploadPartCopy(ctx context.Context, key, id string, n int32, src, srcETag string, off, length int64) (store.Part, error) {
	e.mu.Lock()
	e.pinned[src] = srcETag
	e.mu.Unlock()
	return e.Store.UploadPartCopy(ctx, key, id, n, src, srcETag, off, length)
}

func assertNoStaged(t *testing.T, st *memstore.Store, prefix string) {
	t.Helper()
	if prefix == "" {
		return
	}
	for key := range st.Objects() {
		if strings.HasPrefix(key, prefix) {
			t.Fatalf("temporary object %q left behind", key)
		}
	}
}

// callsOn returns the successful calls named name on key.
func callsOn(st *memstore.Store, name, key string) []memstore.Call {
	var out []memstore.Call
	for _, c := range st.CallsTo(name) {
		if c.Key == key {
			out = append(out, c)
		}
	}
	return out
}

func TestStagedPartsStreamInPieces(t *testing.T) {
	for _, tc := range []struct {
		name        string
		budget      int64
		concurrency int
		slow        bool
	}{
		{"budget of four pieces", 4 * stagePart, 3, false},
		{"budget of two pieces, slow server", 2 * stagePart, 3, true},
		{"budget of six pieces, slow server", 6 * stagePart, 3, true},
		{"one upload at a time", 4 * stagePart, 1, false},
		{"budget of 16 pieces, parts 13-20 staged", 16 * stagePart, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New(memstore.Options{MinPartSize: stagePart})
			if tc.slow {
				mem.SetFault(func(op memstore.Op) error {
					if op.Name == "UploadPart" {
						time.Sleep(time.Millisecond)
					}
					return nil
				})
			}
			st := newETagLog(mem)
			opts := stagedOptions(tc.budget)
			opts.Concurrency = tc.concurrency
			w := newWriter(t, st, opts)
			plan := w.Plan()
			if plan.Size(20) != 256<<10 || !w.staged(17) || w.staged(4) {
				t.Fatalf("plan: part 20 is %d bytes; parts 4 and 17 staged: %v %v", plan.Size(20), w.staged(4), w.staged(17))
			}
			// The file ends inside part 20, so its last staged part is short.
			data := testkit.RandomBytes(20, int(plan.Start(20))+100<<10+123)
			f := w.Open("big", nil, store.PutOptions{})

			// Pieces go out while the application is still writing.
			mid := plan.Start(17) + 100<<10
			writeSeq(t, f, data[:mid], 0, 5000)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && piecesOf(mem, 17) < 6 {
				time.Sleep(5 * time.Millisecond)
			}
			if n := piecesOf(mem, 17); n < 6 {
				t.Fatalf("100 KiB into part 17, %d of its pieces sent; want 6 before sync", n)
			}
			// The staged parts the writer has moved past are brought in.
			before := 0
			for k := 1; k < 17; k++ {
				if w.staged(k) {
					before++
				}
			}
			for time.Now().Before(deadline) && len(callsOn(mem, "UploadPartCopy", "big")) < before {
				time.Sleep(5 * time.Millisecond)
			}
			if n := len(callsOn(mem, "UploadPartCopy", "big")); n != before {
				t.Fatalf("100 KiB into part 17, %d staged parts copied in; want the %d before it", n, before)
			}
			writeSeq(t, f, data[mid:], mid, 5000)
			mustSync(t, f)

			assertStored(t, mem, "big", data)
			for _, c := range callsOn(mem, "UploadPart", "big") {
				if w.staged(int(c.Part)) {
					t.Fatalf("staged part %d was sent whole", c.Part)
				}
			}
			copies := callsOn(mem, "UploadPartCopy", "big")
			if want := before + 4; len(copies) != want {
				t.Fatalf("%d UploadPartCopy into the file, want %d, one per staged part", len(copies), want)
			}
			for _, c := range copies {
				checkStagedPart(t, mem, st, c, plan, data)
			}
			assertNoUploads(t, mem)
			assertNoStaged(t, mem, stagePrefix)
			if s := w.Stats(); s.Used != 0 || s.Peak > tc.budget {
				t.Fatalf("budget %d: %+v", tc.budget, s)
			}
		})
	}
}

// piecesOf counts the pieces sent so far of staged part k.
func piecesOf(st *memstore.Store, k int) int {
	n := 0
	for _, c := range st.CallsTo("UploadPart") {
		if IsStageKey(stagePrefix, c.Key) && strings.HasSuffix(c.Key, fmt.Sprintf(".part%d", k)) {
			n++
		}
	}
	return n
}

// checkStagedPart checks the calls that made part c.Part from a temporary
// object: its pieces, their completion, the pinned copy and the delete.
func checkStagedPart(t *testing.T, mem *memstore.Store, st *etagLog, c memstore.Call, plan Plan, data []byte) {
	t.Helper()
	k := int(c.Part)
	start := plan.Start(k)
	length := min(plan.Size(k), int64(len(data))-start)
	if !IsStageKey(stagePrefix, c.Src) || !strings.HasSuffix(c.Src, fmt.Sprintf(".part%d", k)) {
		t.Fatalf("part %d copied from %q, not a stage key of part %d", k, c.Src, k)
	}
	if c.Off != 0 || c.Length != length {
		t.Fatalf("part %d copied as %d+%d, want 0+%d", k, c.Off, c.Length, length)
	}
	pieces := callsOn(mem, "UploadPart", c.Src)
	if want := int((length + stagePart - 1) / stagePart); len(pieces) != want {
		t.Fatalf("part %d: %d pieces, want %d", k, len(pieces), want)
	}
	for _, p := range pieces {
		off := start + int64(p.Part-1)*stagePart
		body := data[off:min(off+stagePart, start+length)]
		if p.Size != int64(len(body)) || p.MD5 != md5.Sum(body) {
			t.Fatalf("part %d piece %d: %d bytes md5 %x, want %d bytes md5 %x", k, p.Part, p.Size, p.MD5, len(body), md5.Sum(body))
		}
	}
	if n, d := len(callsOn(mem, "CompleteMultipart", c.Src)), len(callsOn(mem, "Delete", c.Src)); n != 1 || d != 1 {
		t.Fatalf("part %d: temporary upload completed %d times, deleted %d times; want once each", k, n, d)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if got, want := st.pinned[c.Src], st.completed[c.Src]; got == "" || got != want {
		t.Fatalf("part %d copied pinned to ETag %q, the temporary object's is %q", k, got, want)
	}
}

func TestStagedPartEdits(t *testing.T) {
	// Each case starts with a file written sequentially 100 KiB into part
	// 17 (its first six pieces sent), edits it, and syncs.
	type file struct {
		t     *testing.T
		f     *File
		model []byte
		plan  Plan
	}
	write := func(x *file, off int64, n int) {
		b := testkit.RandomBytes(uint64(off), n)
		if _, err := x.f.WriteAt(context.Background(), b, off); err != nil {
			x.t.Fatalf("write at %d: %v", off, err)
		}
		if end := int(off) + n; end > len(x.model) {
			x.model = append(x.model, make([]byte, end-len(x.model))...)
		}
		copy(x.model[off:], b)
	}
	truncate := func(x *file, size int64) {
		if err := x.f.Truncate(context.Background(), size); err != nil {
			x.t.Fatalf("truncate to %d: %v", size, err)
		}
		if int(size) <= len(x.model) {
			x.model = x.model[:size]
		} else {
			x.model = append(x.model, make([]byte, int(size)-len(x.model))...)
		}
	}
	read := func(x *file, off int64, n int) {
		p := make([]byte, n)
		got, err := x.f.ReadAt(context.Background(), p, off)
		if err != nil && !errors.Is(err, io.EOF) {
			x.t.Fatalf("read at %d: %v", off, err)
		}
		if want := x.model[min(int(off), len(x.model)):min(int(off)+n, len(x.model))]; !bytes.Equal(p[:got], want) {
			x.t.Fatalf("read %d at %d: %d bytes differing from the %d written", n, off, got, len(want))
		}
	}
	for _, tc := range []struct {
		name        string
		edit        func(x *file)
		checkpoints int // completes of the file before the final sync
	}{
		{"rewrite in the current piece", func(x *file) {
			write(x, x.plan.Start(17)+96<<10+10, 100) // piece 7 is the current one
		}, 0},
		{"write into a sent piece", func(x *file) {
			write(x, x.plan.Start(17)+5000, 3000)
			write(x, int64(len(x.model)), 40<<10)
		}, 1},
		{"write into a staged part already copied", func(x *file) {
			// Part 17 is finished as the writer moves on into part 18.
			write(x, int64(len(x.model)), int(x.plan.Start(18)-int64(len(x.model)))+10)
			write(x, x.plan.Start(17)+200<<10, 2000)
		}, 1},
		{"write far ahead in the staged part", func(x *file) {
			write(x, x.plan.Start(17)+200<<10+5, 3000) // a hole of zeros between
		}, 0},
		{"truncate into the current piece", func(x *file) {
			truncate(x, x.plan.Start(17)+98<<10)
			write(x, int64(len(x.model))+5000, 5000)
		}, 0},
		{"truncate into sent pieces", func(x *file) {
			truncate(x, x.plan.Start(17)+20<<10+7)
			truncate(x, x.plan.Start(17)+60<<10)
		}, 1},
		{"truncate to the start of the staged part", func(x *file) {
			truncate(x, x.plan.Start(17))
			write(x, x.plan.Start(17)+50<<10, 1000)
		}, 0},
		{"truncate below the staged part", func(x *file) {
			truncate(x, x.plan.Start(16)+1000)
		}, 1},
		{"read of sent pieces", func(x *file) {
			read(x, x.plan.Start(17)+3000, 40<<10)
			write(x, int64(len(x.model)), 1000)
		}, 1},
		{"read of the current piece and past the end", func(x *file) {
			write(x, x.plan.Start(17)+110<<10, 1000) // leaves a hole
			read(x, x.plan.Start(17)+96<<10, 20<<10)
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New(memstore.Options{MinPartSize: stagePart})
			w := newWriter(t, st, stagedOptions(4*stagePart))
			x := &file{t: t, f: w.Open("big", nil, store.PutOptions{}), plan: w.Plan()}
			x.model = testkit.RandomBytes(21, int(x.plan.Start(17))+100<<10)
			writeSeq(t, x.f, x.model, 0, 5000)
			tc.edit(x)
			if n := len(callsOn(st, "CompleteMultipart", "big")); n != tc.checkpoints {
				t.Fatalf("%d checkpoints, want %d", n, tc.checkpoints)
			}
			mustSync(t, x.f)
			assertStored(t, st, "big", x.model)
			read(x, 0, len(x.model)+10)
			assertNoUploads(t, st)
			assertNoStaged(t, st, stagePrefix)
			if s := w.Stats(); s.Used != 0 {
				t.Fatalf("budget leaked: %+v", s)
			}
		})
	}
}

func TestStagedEditOfStoredObjectCopiesServerSide(t *testing.T) {
	// A write of 100 bytes inside staged part 18 of a stored object: the
	// part's pieces before and after the one written are copied from the
	// object server-side, so only that piece is read and sent.
	st := memstore.New(memstore.Options{MinPartSize: stagePart})
	w := newWriter(t, st, stagedOptions(4*stagePart))
	old := testkit.RandomBytes(22, int(w.Plan().Start(20))+5000)
	f := openStored(t, st, w, "k", old)
	st.ResetCalls()
	at := w.Plan().Start(18) + 5*stagePart + 300
	patch := testkit.RandomBytes(23, 100)
	if _, err := f.WriteAt(context.Background(), patch, at); err != nil {
		t.Fatal(err)
	}
	mustSync(t, f)
	var sent int64
	for _, c := range st.CallsTo("UploadPart") {
		sent += c.Size
	}
	if _, got := byteCounts(st); got != stagePart-100 || sent != stagePart {
		t.Fatalf("downloaded %d and sent %d bytes, want the rest of one piece and that piece", got, sent)
	}
	want := append([]byte{}, old...)
	copy(want[at:], patch)
	assertStored(t, st, "k", want)
	assertNoUploads(t, st)
	assertNoStaged(t, st, stagePrefix)
}

func TestStagedPartFailures(t *testing.T) {
	boom := errors.New("injected")
	for _, tc := range []struct {
		name  string
		fail  func(op memstore.Op) bool
		after bool // fail the call after it took effect
	}{
		{"start of the temporary upload", func(op memstore.Op) bool {
			return op.Name == "CreateMultipart" && IsStageKey(stagePrefix, op.Key)
		}, false},
		{"a piece", func(op memstore.Op) bool {
			return op.Name == "UploadPart" && IsStageKey(stagePrefix, op.Key) && op.Part == 3
		}, false},
		{"complete of the temporary upload", func(op memstore.Op) bool {
			return op.Name == "CompleteMultipart" && strings.HasSuffix(op.Key, ".part18")
		}, false},
		{"complete of the temporary upload, reply lost", func(op memstore.Op) bool {
			return op.Name == "CompleteMultipart" && strings.HasSuffix(op.Key, ".part18")
		}, true},
		{"the copy", func(op memstore.Op) bool {
			return op.Name == "UploadPartCopy" && IsStageKey(stagePrefix, op.Src)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New(memstore.Options{MinPartSize: stagePart})
			old := []byte("old")
			if _, err := st.Put(context.Background(), "big", old, md5.Sum(old), store.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			fault := func(op memstore.Op) error {
				if tc.fail(op) {
					return boom
				}
				return nil
			}
			if tc.after {
				st.SetFaultAfter(fault)
			} else {
				st.SetFault(fault)
			}
			w := newWriter(t, st, stagedOptions(4*stagePart))
			f := w.Open("big", nil, store.PutOptions{})
			data := testkit.RandomBytes(24, int(w.Plan().Start(19))+1000)
			for off := 0; off < len(data); off += 5000 {
				if _, err := f.WriteAt(context.Background(), data[off:min(off+5000, len(data))], int64(off)); err != nil {
					break // a later write may already see the failure
				}
			}
			if _, err := f.Sync(context.Background()); !errors.Is(err, boom) {
				t.Fatalf("sync: %v, want the injected failure", err)
			}
			assertStored(t, st, "big", old)
			assertNoUploads(t, st)
			assertNoStaged(t, st, stagePrefix)
			if s := w.Stats(); s.Used != 0 {
				t.Fatalf("budget leaked: %+v", s)
			}
		})
	}
}

func TestStagedDeleteFailureKeepsFile(t *testing.T) {
	// The temporary object was copied: a failed delete leaves it behind,
	// logged with its key, and the file is stored.
	st := memstore.New(memstore.Options{MinPartSize: stagePart})
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "Delete" && strings.HasSuffix(op.Key, ".part6") {
			return errors.New("injected")
		}
		return nil
	})
	var logged bytes.Buffer
	var mu sync.Mutex
	opts := stagedOptions(4 * stagePart)
	opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w := newWriter(t, st, opts)
	f := w.Open("big", nil, store.PutOptions{})
	data := testkit.RandomBytes(25, int(w.Plan().Start(8)))
	writeSeq(t, f, data, 0, 5000)
	mustSync(t, f)
	assertStored(t, st, "big", data)
	assertNoUploads(t, st)
	var left []string
	for key := range st.Objects() {
		if key != "big" {
			left = append(left, key)
		}
	}
	if len(left) != 1 || !IsStageKey(stagePrefix, left[0]) || !strings.HasSuffix(left[0], ".part6") {
		t.Fatalf("objects left besides the file: %q, want the temporary object of part 6", left)
	}
	mu.Lock()
	defer mu.Unlock()
	if line := logged.String(); !strings.Contains(line, "level=WARN") || !strings.Contains(line, left[0]) {
		t.Fatalf("log %q: want a warning naming %q", line, left[0])
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestStageKeys(t *testing.T) {
	key := stageKey(stagePrefix, 129)
	if !strings.HasPrefix(key, stagePrefix) || strings.Contains(key[len(stagePrefix):], "/") || !strings.HasSuffix(key, ".part129") {
		t.Fatalf("stage key %q", key)
	}
	if key == stageKey(stagePrefix, 129) {
		t.Fatal("two stage keys of one part are equal")
	}
	for _, tc := range []struct {
		prefix, key string
		want        bool
	}{
		{stagePrefix, key, true},
		{stagePrefix, stagePrefix + "0123456789abcdef.part1", true},
		{stagePrefix, stagePrefix + "0123456789abcdef.part10000", true},
		{"", "0123456789abcdef.part1", false},
		{stagePrefix, "m/0123456789abcdef.part1", false},
		{stagePrefix, stagePrefix + "0123456789abcdef.part0", false},
		{stagePrefix, stagePrefix + "0123456789abcdef.part10001", false},
		{stagePrefix, stagePrefix + "0123456789abcdef.part01", false},
		{stagePrefix, stagePrefix + "0123456789ABCDEF.part1", false},
		{stagePrefix, stagePrefix + "0123456789abcde.part1", false},
		{stagePrefix, stagePrefix + "x/0123456789abcdef.part1", false},
		{stagePrefix, stagePrefix + "notes.txt", false},
	} {
		if got := IsStageKey(tc.prefix, tc.key); got != tc.want {
			t.Errorf("IsStageKey(%q, %q) = %v, want %v", tc.prefix, tc.key, got, tc.want)
		}
	}
}

func TestStagedPieceFailureReachesWrites(t *testing.T) {
	// A failed piece fails the writes that follow, before the part is done.
	st := memstore.New(memstore.Options{MinPartSize: stagePart})
	boom := errors.New("injected")
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPart" && strings.HasSuffix(op.Key, ".part17") && op.Part == 1 {
			return boom
		}
		return nil
	})
	w := newWriter(t, st, stagedOptions(4*stagePart))
	f := w.Open("big", nil, store.PutOptions{})
	data := testkit.RandomBytes(26, int(w.Plan().Start(18))) // to the end of part 17, which stays open
	var err error
	for off := 0; err == nil && off < len(data); off += 1000 {
		_, err = f.WriteAt(context.Background(), data[off:min(off+1000, len(data))], int64(off))
	}
	if !errors.Is(err, boom) {
		t.Fatalf("write after a failed piece: %v, want the injected failure", err)
	}
	if _, err := f.Sync(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("sync: %v, want the injected failure", err)
	}
	assertNoUploads(t, st)
}

func TestStagedWriteFailingAfterPiecesPastTheEnd(t *testing.T) {
	// A write far into a staged part sends the pieces before it (zeros past
	// the file's end) and then fails waiting for memory: the file keeps its
	// size, and the pieces sent past it must not leak into the object.
	for _, tc := range []struct {
		name  string
		after int64 // truncate to this many bytes into part 17 before the sync; 0: none
	}{
		{"sync at once", 0},
		{"grown into the pieces sent", 10 << 10},
		{"grown past them", 250 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New(memstore.Options{MinPartSize: stagePart})
			var slow atomic.Bool
			st.SetFault(func(op memstore.Op) error {
				if op.Name == "UploadPart" && slow.Load() {
					time.Sleep(30 * time.Millisecond)
				}
				return nil
			})
			opts := stagedOptions(2 * stagePart)
			opts.Concurrency = 1
			w := newWriter(t, st, opts)
			start := w.Plan().Start(17)
			data := testkit.RandomBytes(27, int(start)+1000)
			f := w.Open("big", nil, store.PutOptions{})
			writeSeq(t, f, data, 0, 5000)
			slow.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if _, err := f.WriteAt(ctx, []byte("far"), start+200<<10); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("write with a short deadline: %v, want it to run out waiting for memory", err)
			}
			slow.Store(false)
			if f.Size() != int64(len(data)) {
				t.Fatalf("size %d after the failed write, want %d", f.Size(), len(data))
			}
			want := data
			if tc.after > 0 {
				if err := f.Truncate(context.Background(), start+tc.after); err != nil {
					t.Fatal(err)
				}
				want = append(append([]byte{}, data...), make([]byte, int(start+tc.after)-len(data))...)
			}
			mustSync(t, f)
			assertStored(t, st, "big", want)
			assertNoUploads(t, st)
			assertNoStaged(t, st, stagePrefix)
		})
	}
}
