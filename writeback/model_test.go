package writeback

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// FuzzFileAgainstModel runs random writes, truncates, reads and syncs on a
// File with 1 KiB parts and checks every read and every stored object
// against a plain byte slice.
func FuzzFileAgainstModel(f *testing.F) {
	f.Add([]byte("\x00\x10\x00\x20\x03\x01\x00\x30\x00\x40\x02\x00\x00\x00\x00\x04"), uint16(3000))
	f.Add([]byte("\x01\x02\x00\x00\x07\x00\x00\x10\x00\x00\x05\x00\x00\x01\x00\x03\x00\x00\x00\x00"), uint16(0))
	f.Fuzz(func(t *testing.T, ops []byte, baseSize uint16) {
		const part = 1 << 10
		st := memstore.New(memstore.Options{MinPartSize: part})
		w, err := New(st, Options{PartSize: part, BufferBytes: 8 * part, Concurrency: 3, minPartSize: part, maxParts: 64})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		model := randomBytes(uint64(baseSize), int(baseSize)%(20*part))
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
		for len(ops) >= 5 {
			op, a, b := ops[0]%5, int(binary.LittleEndian.Uint16(ops[1:])), int(binary.LittleEndian.Uint16(ops[3:]))
			ops = ops[5:]
			switch op {
			case 0, 1: // write b%3000 bytes at a
				off, n := a%(maxSize-3000), b%3000
				data := randomBytes(uint64(a^b), n)
				if _, err := file.WriteAt(ctx, data, int64(off)); err != nil {
					t.Fatalf("write %d at %d: %v", n, off, err)
				}
				if n > 0 && off+n > len(model) { // an empty write does not extend
					model = append(model, make([]byte, off+n-len(model))...)
				}
				if n > 0 {
					copy(model[off:], data)
				}
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
		}
		if _, err := file.Sync(ctx); err != nil {
			t.Fatalf("final sync: %v", err)
		}
		assertStored(t, st, "k", model)
		assertNoUploads(t, st)
		if s := w.Stats(); s.Used != 0 {
			t.Fatalf("budget leaked: %+v", s)
		}
	})
}
