package cache

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// chunkSlots is the number of block buffers carved out of one allocation.
const chunkSlots = 64

// pool hands out the buffers that blocks are read into and takes them back
// when the last holder of a block lets go, so that memory is reused instead
// of allocated for every block. Fresh memory is expensive: the first touch of
// every 4 KiB page is a page fault, and a cache that is full would otherwise
// fault in new pages for each block it takes in while the garbage collector
// frees the ones it evicted.
//
// Buffers are slots of a block's size in chunks of chunkSlots slots. The
// blocks of one fetch ask for consecutive slots of one chunk when a chunk has
// them, so that the GET is read into one span of memory (store.ReadSpans
// reads buffers that lie end to end as one: reads smaller than the HTTP
// client's buffer are copied through it). A chunk whose slots are all free
// is let go to the garbage collector once more than keep slots are free, so
// that memory given back (Forget, a reader that stops) does not stay held.
// Memory is therefore the most the blocks in use have ever needed, plus at
// most keep free slots and the free slots of chunks still partly in use; the
// pool reuses every free slot before it allocates a chunk.
type pool struct {
	slot  int64 // bytes per slot: the block size
	keep  int   // free slots kept beyond those of chunks in use
	alloc func(n int) []byte

	mu      sync.Mutex
	partial []*chunk // guarded by mu; the chunks with a free slot, in no order
	free    int      // guarded by mu; free slots in partial
	chunks  int      // guarded by mu; chunks held
}

// chunk is one allocation of chunkSlots slots.
type chunk struct {
	mem  []byte
	used uint64 // guarded by pool.mu; bit i set: slot i is handed out
	at   int    // guarded by pool.mu; index in pool.partial, -1 when full
}

// block is the bytes of one block of an object in a slot of the pool, shared
// by everyone holding a reference: the block cache while ristretto keeps it,
// a fetch while its readers may still take it, and every reply in flight
// that points into it. The slot goes back to the pool when the last
// reference is let go, and is not touched again until then; a reference
// never let go only keeps the slot from being reused.
type block struct {
	data   []byte
	refs   atomic.Int32
	cached atomic.Bool // one of refs is the block cache's
	pool   *pool
	chunk  *chunk
	slot   int
}

func newPool(slot int64, keep int, alloc func(n int) []byte) *pool {
	if alloc == nil {
		alloc = func(n int) []byte { return make([]byte, n) }
	}
	return &pool{slot: slot, keep: max(keep, chunkSlots), alloc: alloc}
}

// get returns len(lens) blocks of lens[j] bytes each (at most the slot
// size), each with one reference for the caller, in consecutive slots of one
// chunk when a chunk has them.
func (p *pool) get(lens []int64) []*block {
	n := len(lens)
	out := make([]*block, 0, n)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= chunkSlots && n > 1 {
		for _, c := range p.partial {
			if first, ok := freeRun(c.used, n); ok {
				for s := first; s < first+n; s++ {
					out = append(out, p.takeLocked(c, s, lens[len(out)]))
				}
				return out
			}
		}
	}
	for len(out) < n {
		if len(p.partial) == 0 {
			p.addChunkLocked()
		}
		c := p.partial[len(p.partial)-1]
		s := bits.TrailingZeros64(^c.used)
		out = append(out, p.takeLocked(c, s, lens[len(out)]))
	}
	return out
}

// freeRun returns the first of n consecutive clear bits of used.
func freeRun(used uint64, n int) (int, bool) {
	mask := uint64(1)<<n - 1
	if n == chunkSlots {
		mask = ^uint64(0)
	}
	for s := 0; s+n <= chunkSlots; s++ {
		if used&(mask<<s) == 0 {
			return s, true
		}
	}
	return 0, false
}

// addChunkLocked allocates a chunk; its slots are free.
func (p *pool) addChunkLocked() {
	c := &chunk{mem: p.alloc(int(p.slot) * chunkSlots)}
	p.chunks++
	p.free += chunkSlots
	c.at = len(p.partial)
	p.partial = append(p.partial, c)
}

// takeLocked hands out slot s of c as a block of n bytes.
func (p *pool) takeLocked(c *chunk, s int, n int64) *block {
	c.used |= 1 << s
	p.free--
	if c.used == ^uint64(0) {
		p.removeLocked(c)
	}
	off := int64(s) * p.slot
	b := &block{data: c.mem[off : off+n], pool: p, chunk: c, slot: s}
	b.refs.Store(1)
	return b
}

// removeLocked takes c out of partial.
func (p *pool) removeLocked(c *chunk) {
	last := p.partial[len(p.partial)-1]
	p.partial[c.at] = last
	last.at = c.at
	p.partial = p.partial[:len(p.partial)-1]
	c.at = -1
}

// put takes back the slot of b, whose last reference is gone.
func (p *pool) put(b *block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := b.chunk
	if c.at < 0 {
		c.at = len(p.partial)
		p.partial = append(p.partial, c)
	}
	c.used &^= 1 << b.slot
	p.free++
	if c.used == 0 && p.free-chunkSlots >= p.keep {
		p.removeLocked(c)
		p.free -= chunkSlots
		p.chunks--
	}
}

// usage returns the bytes of the chunks held and of their free slots.
func (p *pool) usage() (held, free int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(p.chunks) * chunkSlots * p.slot, int64(p.free) * p.slot
}

// hold adds a reference to b; the caller must hold one already.
func (b *block) hold() {
	if b.refs.Add(1) <= 1 {
		panic("cache: hold of a block nobody holds")
	}
}

// tryHold adds a reference to b unless its last one is gone (its slot may
// already hold another block): a block found in ristretto may have been
// evicted and let go since.
func (b *block) tryHold() bool {
	for {
		n := b.refs.Load()
		if n <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release lets go of one reference; the last one gives the slot back.
func (b *block) release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.pool.put(b)
	case n < 0:
		panic("cache: block released more often than held")
	}
}
