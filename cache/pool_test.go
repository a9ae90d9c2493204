package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// contiguous reports whether the blocks lie end to end in memory.
func contiguous(bs []*block) bool {
	for j := 1; j < len(bs); j++ {
		a := bs[j-1].data
		if cap(a) <= len(a) || &a[:len(a)+1][len(a)] != &bs[j].data[0] {
			return false
		}
	}
	return true
}

func TestPoolHandsOutRunsAndReusesSlots(t *testing.T) {
	p := newPool(100, 0, nil)
	run := p.get([]int64{100, 100, 100, 40})
	if !contiguous(run) || len(run[3].data) != 40 {
		t.Fatal("the blocks of one get are not end to end in one chunk")
	}
	for _, b := range run {
		if b.refs.Load() != 1 {
			t.Fatalf("a new block has %d references, want 1", b.refs.Load())
		}
	}
	first := &run[0].data[0]
	for _, b := range run {
		b.release()
	}
	again := p.get([]int64{100, 100})
	if &again[0].data[0] != first || !contiguous(again) {
		t.Error("the slots let go of were not reused first")
	}
	if held, _ := p.usage(); held != chunkSlots*100 {
		t.Errorf("pool holds %d bytes, want one chunk (%d)", held, chunkSlots*100)
	}
}

// A get larger than any free run takes scattered free slots before it
// allocates, so memory stays at the most ever held.
func TestPoolFillsHolesBeforeAllocating(t *testing.T) {
	p := newPool(10, 0, nil)
	lens := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = 10
		}
		return out
	}
	all := p.get(lens(chunkSlots))
	for j := 0; j < chunkSlots; j += 2 {
		all[j].release() // every other slot free: no run of two
	}
	got := p.get(lens(4))
	if held, free := p.usage(); held != chunkSlots*10 || free != (chunkSlots/2-4)*10 {
		t.Fatalf("held %d free %d bytes, want the one chunk with %d free slots", held, free, chunkSlots/2-4)
	}
	if contiguous(got) {
		t.Error("scattered slots reported end to end")
	}
}

func TestPoolLetsGoOfFreeChunksBeyondKeep(t *testing.T) {
	p := newPool(10, chunkSlots, nil)
	var held []*block
	for range 4 * chunkSlots {
		held = append(held, p.get([]int64{10})...)
	}
	if h, _ := p.usage(); h != 4*chunkSlots*10 {
		t.Fatalf("held %d bytes, want 4 chunks", h)
	}
	for _, b := range held {
		b.release()
	}
	// One free chunk is kept (keep is one chunk's slots) and the one whose
	// slots went free first, up to keep; the others are let go.
	if h, free := p.usage(); h > 2*chunkSlots*10 || free != h {
		t.Fatalf("after letting go of everything: held %d, free %d bytes; want at most 2 chunks, all free", h, free)
	}
}

func TestBlockReferences(t *testing.T) {
	p := newPool(10, 0, nil)
	b := p.get([]int64{10})[0]
	b.hold()
	b.release()
	if !b.tryHold() {
		t.Fatal("tryHold of a held block failed")
	}
	b.release()
	b.release() // the last one
	if b.tryHold() {
		t.Fatal("tryHold of a block let go of succeeded")
	}
	if _, free := p.usage(); free != chunkSlots*10 {
		t.Fatalf("the slot was not given back: %d bytes free", free)
	}
	defer func() {
		if recover() == nil {
			t.Error("releasing a block let go of did not panic")
		}
	}()
	b.release()
}

// checkAllFree fails unless every slot of c's pool is free: after Close
// every reference has been let go of.
func checkAllFree(t *testing.T, c *Cache) {
	t.Helper()
	if held, free := c.pool.usage(); held != free {
		t.Fatalf("after Close the pool still hands out %d of %d bytes: a reference was never let go of", held-free, held)
	}
}

// A span keeps its bytes while the cache evicts its blocks and reuses their
// memory for others; released, its blocks' memory is reused.
func TestSpanOutlivesEviction(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	data := testkit.RandomBytes(5, 200*testBlock)
	obj := put(t, mem, "key", data)
	c, err := New(mem, Options{BlockSize: testBlock, MaxBytes: 4 * testBlock, ReadAheadBytes: 8 * testBlock})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Open(obj)
	sp, err := r.Span(context.Background(), 0, 2*testBlock)
	if err != nil {
		t.Fatal(err)
	}
	c.blocks.Wait()
	// Sequential reads of the rest: read-ahead, eviction, reuse of slots.
	readSequentially(t, r, data, 500)
	var got []byte
	for _, v := range sp.Slices() {
		got = append(got, v...)
	}
	if !bytes.Equal(got, data[:2*testBlock]) {
		t.Fatal("the span's bytes changed while it was held")
	}
	held, _ := c.pool.usage()
	if held > 3*chunkSlots*testBlock {
		t.Errorf("the pool grew to %d bytes for a cache of 4 blocks and 8 blocks of read-ahead", held)
	}
	sp.Release()
	sp.Release() // twice is fine
	r.Close()
	c.Close()
	checkAllFree(t, c)
}

// TestRecyclingUnderConcurrency reads several objects at once through a
// cache far smaller than they are, sequentially (with read-ahead) and at
// random, holding spans for a while as replies in flight do, while others
// forget objects: every span holds the right bytes until it is released,
// and once everything is closed every block has gone back to the pool. Run
// with -race, a slot reused while still referenced shows as a race or as
// wrong bytes.
func TestRecyclingUnderConcurrency(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	const objects, size = 4, 60 * testBlock
	var objs []store.Object
	var datas [][]byte
	for i := range objects {
		d := testkit.RandomBytes(uint64(100+i), size+i*123)
		datas = append(datas, d)
		objs = append(objs, put(t, mem, fmt.Sprintf("k%d", i), d))
	}
	c, err := New(mem, Options{BlockSize: testBlock, MaxBytes: 12 * testBlock, ReadAheadBytes: 16 * testBlock,
		FetchSize: 4 * testBlock, SequentialSlack: 2 * testBlock})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	check := func(sp *Span, err error, d []byte, off int64) error {
		if err != nil && err != io.EOF {
			return err
		}
		var got []byte
		for _, v := range sp.Slices() {
			got = append(got, v...)
		}
		if !bytes.Equal(got, d[off:off+int64(len(got))]) {
			return fmt.Errorf("wrong bytes at %d", off)
		}
		return nil
	}
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			type reply struct {
				sp  *Span
				o   int
				off int64
			}
			var held []reply
			defer func() {
				for _, h := range held {
					h.sp.Release()
				}
			}()
			for round := range 6 {
				o := (w + round) % objects
				r := c.Open(objs[o])
				off := int64(0)
				for range 40 {
					n := 1 + rng.IntN(3*testBlock)
					if w%2 == 1 {
						off = rng.Int64N(objs[o].Size)
					}
					sp, err := r.Span(context.Background(), off, n)
					if err := check(sp, err, datas[o], off); err != nil {
						errs <- err
						r.Close()
						return
					}
					held = append(held, reply{sp, o, off})
					if len(held) > 4 || rng.IntN(3) == 0 {
						// Still the right bytes when the reply is written.
						h := held[0]
						if err := check(h.sp, nil, datas[h.o], h.off); err != nil {
							errs <- fmt.Errorf("a held span changed: %w", err)
						}
						h.sp.Release()
						held = held[1:]
					}
					off += int64(n)
					if off >= objs[o].Size {
						off = 0
					}
				}
				r.Close()
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			c.Forget(objs[i%objects])
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.Close()
	checkAllFree(t, c)
}
