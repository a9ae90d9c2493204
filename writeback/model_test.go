package writeback

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// modelConfig is a Writer and the ranges of the random operations run on it.
type modelConfig struct {
	opts  Options
	part  int64
	scale int  // operation offsets are multiplied by scale
	kinds byte // 5 kinds of operations, or 6 with appends
	base  int  // the base object is smaller than this
}

// FuzzFileAgainstModel runs random writes, truncates, reads and syncs on a
// File with 1 KiB parts and checks every read and every stored object
// against a plain byte slice.
func FuzzFileAgainstModel(f *testing.F) {
	f.Add([]byte("\x00\x10\x00\x20\x03\x01\x00\x30\x00\x40\x02\x00\x00\x00\x00\x04"), uint16(3000))
	f.Add([]byte("\x01\x02\x00\x00\x07\x00\x00\x10\x00\x00\x05\x00\x00\x01\x00\x03\x00\x00\x00\x00"), uint16(0))
	const part = 1 << 10
	cfg := modelConfig{
		opts: Options{PartSize: part, BufferBytes: 8 * part, Concurrency: 3, minPartSize: part, maxParts: 64},
		part: part, scale: 1, kinds: 5, base: 20 * part,
	}
	f.Fuzz(func(t *testing.T, ops []byte, baseSize uint16) {
		runModel(t, cfg, ops, baseSize)
	})
}

// stagedModel has 1 KiB parts doubling every 2 parts up to 64 KiB, and an
// 8 KiB budget, so parts 5 to 14 are staged in 1 KiB pieces.
var stagedModel = modelConfig{
	opts: Options{PartSize: 1 << 10, BufferBytes: 8 << 10, Concurrency: 3, StagePrefix: "s/.stage/",
		minPartSize: 1 << 10, maxParts: 14, planStep: 2},
	part: 1 << 10, scale: 4, kinds: 6, base: 1 << 16,
}

// FuzzStagedFileAgainstModel is FuzzFileAgainstModel on staged parts, with
// appends so that staged parts are also written sequentially.
func FuzzStagedFileAgainstModel(f *testing.F) {
	f.Add([]byte("\x05\x00\x00\xb7\x0b\x05\x00\x00\xb7\x0b\x03\x00\x10\x00\x10\x00\x00\x01\x10\x00\x04\x00\x00\x00\x00"), uint16(40000))
	f.Add([]byte("\x00\x00\x20\x10\x00\x05\x00\x00\xb7\x0b\x02\x00\x21\x00\x00\x03\x00\x20\xa0\x0f"), uint16(0))
	f.Fuzz(func(t *testing.T, ops []byte, baseSize uint16) {
		runModel(t, stagedModel, ops, baseSize)
	})
}

// TestStagedFileAgainstModel runs random operations on staged parts, as the
// fuzz target does, with fixed seeds.
func TestStagedFileAgainstModel(t *testing.T) {
	copied := 0
	for seed := range uint64(60) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			ops := make([]byte, 5*40)
			for i := range ops {
				ops[i] = byte(r.Uint32())
			}
			for i := 0; i < len(ops); i += 5 {
				if r.IntN(3) == 0 {
					ops[i] = 5 // more appends: sequential writers are the common case
				}
			}
			st := runModel(t, stagedModel, ops, uint16(r.Uint32()))
			for _, c := range st.CallsTo("UploadPartCopy") {
				if IsStageKey(stagedModel.opts.StagePrefix, c.Src) {
					copied++
				}
			}
		})
	}
	if copied < 100 {
		t.Fatalf("%d staged parts copied in over all runs: the runs miss staged parts", copied)
	}
}

func runModel(t *testing.T, cfg modelConfig, ops []byte, baseSize uint16) *memstore.Store {
	st := memstore.New(memstore.Options{MinPartSize: cfg.part})
	w, err := New(st, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	model := testkit.RandomBytes(uint64(baseSize), int(baseSize)%cfg.base)
	var file *File
	if len(model) > 0 {
		obj, err := st.Put(ctx, "k", model, md5.Sum(model), store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		obj.Size = int64(len(model))
		file = w.Open("k", &obj, store.PutOptions{})
	} else {
		file = w.Open("k", nil, store.PutOptions{})
	}
	maxSize := int(w.Plan().MaxSize())
	write := func(off, n int, seed uint64) {
		data := testkit.RandomBytes(seed, n)
		if _, err := file.WriteAt(ctx, data, int64(off)); err != nil {
			t.Fatalf("write %d at %d: %v", n, off, err)
		}
		if n > 0 && off+n > len(model) { // an empty write does not extend
			model = append(model, make([]byte, off+n-len(model))...)
		}
		if n > 0 {
			copy(model[off:], data)
		}
	}
	for len(ops) >= 5 {
		op, a, b := ops[0]%cfg.kinds, int(binary.LittleEndian.Uint16(ops[1:])), int(binary.LittleEndian.Uint16(ops[3:]))
		ops = ops[5:]
		a *= cfg.scale
		switch op {
		case 0, 1: // write b%3000 bytes at a
			write(a%(maxSize-3000), b%3000, uint64(a^b))
		case 5: // append b%3000 bytes
			write(len(model), min(b%3000, maxSize-len(model)), uint64(a^b))
		case 2: // truncate
			size := a % (maxSize / 2)
			if err := file.Truncate(ctx, int64(size)); err != nil {
				t.Fatalf("truncate to %d: %v", size, err)
			}
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		case 3: // read
			off, n := a%(len(model)+10), b%4000
			p := make([]byte, n)
			got, err := file.ReadAt(ctx, p, int64(off))
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("read %d at %d: %v", n, off, err)
			}
			want := model[min(off, len(model)):min(off+n, len(model))]
			if !bytes.Equal(p[:got], want) {
				t.Fatalf("read %d at %d: got %d bytes differing from the model's %d", n, off, got, len(want))
			}
		case 4:
			if _, err := file.Sync(ctx); err != nil {
				t.Fatalf("sync: %v", err)
			}
			assertStored(t, st, "k", model)
		}
		if file.Size() != int64(len(model)) {
			t.Fatalf("size %d, model %d", file.Size(), len(model))
		}
		checkFile(t, w, file)
	}
	if _, err := file.Sync(ctx); err != nil {
		t.Fatalf("final sync: %v", err)
	}
	checkFile(t, w, file)
	assertStored(t, st, "k", model)
	assertNoUploads(t, st)
	assertNoStaged(t, st, cfg.opts.StagePrefix)
	if s := w.Stats(); s.Used != 0 || s.Peak > s.Total {
		t.Fatalf("budget leaked or overrun: %+v", s)
	}
	return st
}

// checkFile fails the test when a part state invariant of file is broken
// (File.checkLocked), or when the budget has handed out fewer bytes than
// file holds (the rest of what it has handed out is in uploads).
func checkFile(t *testing.T, w *Writer, file *File) {
	t.Helper()
	file.opMu.Lock()
	err, held := file.checkLocked(), file.held
	file.opMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if used := w.Stats().Used; used < held {
		t.Fatalf("the file holds %d bytes of buffers, the budget has handed out %d", held, used)
	}
}
