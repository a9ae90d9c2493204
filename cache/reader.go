package cache

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/partfs/partfs/store"
)

const (
	// sequentialReads is how many reads in a row, each starting near where
	// the previous ones ended, make a reader sequential.
	sequentialReads = 2
	// initialWindowBlocks is the read-ahead window, in blocks, of a reader
	// that has just turned sequential.
	initialWindowBlocks = 2
)

// Reader reads one version of one object for one open file handle and
// fetches ahead while its reads are sequential (see the package comment).
// It is safe for concurrent use: the kernel sends several reads of one
// handle at once.
type Reader struct {
	c   *Cache
	obj store.Object
	// ctx ends with Close; read-ahead fetches run under runCtx, derived
	// from it, which ends whenever the reader stops being sequential.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool               // guarded by mu
	next      int64              // guarded by mu; where the current run of reads ends
	streak    int                // guarded by mu; reads in the current run
	window    int64              // guarded by mu; bytes to have fetched beyond the last read; 0 when not sequential
	grownAt   int64              // guarded by mu; the read end at which window last grew
	low       int64              // guarded by mu; no block below low is in ahead
	issued    int64              // guarded by mu; blocks in [low, issued) were fetched ahead unless cached
	ahead     map[int64]*fetch   // guarded by mu; blocks fetched ahead and not yet read past, each holding its length of budget
	runCtx    context.Context    // guarded by mu; nil when not sequential
	runCancel context.CancelFunc // guarded by mu
}

// Open returns a Reader of obj (Key, ETag and Size, as stat'ed when the file
// was opened). Every read through it is of that version: if the object has
// changed since, reads of blocks not cached fail with store.ErrPrecondition.
// The caller must Close it.
func (c *Cache) Open(obj store.Object) *Reader {
	ctx, cancel := context.WithCancel(c.ctx)
	return &Reader{c: c, obj: obj, ctx: ctx, cancel: cancel, ahead: make(map[int64]*fetch)}
}

// Object returns the version the reader reads.
func (r *Reader) Object() store.Object { return r.obj }

// Close stops the reader's fetches ahead and gives their budget back. Reads
// afterwards fail; Close may be called more than once.
func (r *Reader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.stopLocked()
	r.cancel()
}

// Span is a range of an object's bytes as slices of cached blocks, in
// order, for a reply that hands them to the kernel without copying them
// (writev). The slices are shared and must not be modified. They stay valid
// and unchanged until Release, after which the memory of their blocks may
// hold other blocks: the fs layer releases a span once go-fuse has written
// the reply (ReadResult.Done). A span never released only keeps its blocks'
// memory from being reused.
type Span struct {
	vecs   [][]byte
	blocks []*block // a reference to each
	n      int
}

// Slices returns the bytes of s.
func (s *Span) Slices() [][]byte { return s.vecs }

// Len returns the number of bytes of s.
func (s *Span) Len() int { return s.n }

// Release lets go of the blocks of s; its slices must not be used after.
// Calls after the first do nothing.
func (s *Span) Release() {
	for _, b := range s.blocks {
		b.release()
	}
	s.vecs, s.blocks = nil, nil
}

// Span returns the n bytes at off as a Span of the cached blocks, which
// the caller must Release. Like ReadAt it returns io.EOF with a range that
// reaches the end, and an empty Span and io.EOF at or past it.
func (r *Reader) Span(ctx context.Context, off int64, n int) (*Span, error) {
	obj := r.obj
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("cache: read %d bytes of %q at %d", n, obj.Key, off)
	}
	if off >= obj.Size {
		return &Span{}, io.EOF
	}
	end := min(off+int64(n), obj.Size)
	var eof error
	if end < off+int64(n) {
		eof = io.EOF
	}
	if end == off {
		return &Span{}, eof
	}
	if obj.ETag == "" {
		p := make([]byte, end-off)
		if err := r.c.readDirect(ctx, obj, p, off); err != nil {
			return nil, err
		}
		return &Span{vecs: [][]byte{p}, n: len(p)}, eof
	}
	bs := r.c.blockSize
	first := off / bs
	sp := &Span{blocks: make([]*block, (end-1)/bs-first+1), n: int(end - off)}
	if err := r.visit(ctx, off, end, func(i int64, b *block) { sp.blocks[i-first] = b }); err != nil {
		for _, b := range sp.blocks {
			if b != nil {
				b.release()
			}
		}
		return nil, err
	}
	sp.vecs = make([][]byte, len(sp.blocks))
	for j, b := range sp.blocks {
		start := (first + int64(j)) * bs
		sp.vecs[j] = b.data[max(off, start)-start : min(end, start+int64(len(b.data)))-start]
	}
	return sp, eof
}

// visit hands every block covering [off, end), which lies within the
// object, to got: from the blocks fetched ahead, the cache, or fetched now.
func (r *Reader) visit(ctx context.Context, off, end int64, got blockFunc) error {
	c, obj := r.c, r.obj
	first, last := off/c.blockSize, (end-1)/c.blockSize
	var buf [8]*fetch
	ahead, err := r.plan(off, end, buf[:0])
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range ahead {
			if f != nil {
				c.unuse(f)
			}
		}
	}()
	var missing []int64
	var hits, waits int64
	for i := first; i <= last; i++ {
		if f := ahead[i-first]; f != nil {
			select {
			case <-f.done:
				hits++
			default:
				waits++
			}
			b, done, err := wait(ctx, f)
			if !done {
				return fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
			}
			if err == nil {
				got(i, b)
				continue
			}
			// A failed fetch ahead is retried as this read's own below,
			// which reports the error if the store fails again.
		}
		b, ok, err := c.lookup(obj, i)
		if err != nil {
			return err
		}
		if ok {
			hits++
			got(i, b)
			continue
		}
		missing = append(missing, i)
	}
	c.hits.Add(hits)
	c.misses.Add(waits)
	if err := c.fetchMissing(ctx, obj, missing, got); err != nil {
		return err
	}
	r.consumed(end)
	return nil
}

// plan records the read [off, end), starts fetches ahead when the reader
// is sequential, and appends to buf the fetches ahead (or nil) of each
// block the read covers, with the caller as one more user of each: a read
// running beside this one may let go of the reader's own use meanwhile.
func (r *Reader) plan(off, end int64, buf []*fetch) ([]*fetch, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	r.observeLocked(off, end)
	if r.window > 0 {
		r.fetchAheadLocked(off, end)
	}
	for i := off / r.c.blockSize; i <= (end-1)/r.c.blockSize; i++ {
		f := r.ahead[i]
		if f != nil {
			r.c.use(f)
		}
		buf = append(buf, f)
	}
	return buf, nil
}

// observeLocked updates the sequential detector with the read [off, end)
// and opens, grows, shrinks or closes the read-ahead window.
func (r *Reader) observeLocked(off, end int64) {
	c := r.c
	if off >= r.next-c.slack && off <= r.next+c.slack {
		r.streak++
		r.next = max(r.next, end)
	} else {
		r.streak = 1
		r.next = end
		r.stopLocked()
	}
	if r.streak < sequentialReads {
		return
	}
	if r.window == 0 {
		r.window = initialWindowBlocks * c.blockSize
		r.grownAt = end
		r.low, r.issued = off/c.blockSize, off/c.blockSize
		r.runCtx, r.runCancel = context.WithCancel(r.ctx)
		c.sequential.Add(1)
	} else if end-r.grownAt >= r.window/2 {
		// Grow fast while the window is small, where a reader waits for
		// the first-byte latency of nearly every GET, then steadily.
		if r.window < c.budget.limit/8 {
			r.window *= 4
		} else {
			r.window *= 2
		}
		r.grownAt = end
	}
	r.window = min(r.window, c.share())
}

// share is the most one sequential reader may fetch ahead: an equal share
// of the budget, and at least two blocks.
func (c *Cache) share() int64 {
	n := max(1, c.sequential.Load())
	return max(initialWindowBlocks*c.blockSize, c.budget.limit/n)
}

// stopLocked closes the read-ahead window: fetches ahead are canceled and
// their blocks let go.
func (r *Reader) stopLocked() {
	if r.window == 0 {
		return
	}
	r.window = 0
	r.c.sequential.Add(-1)
	r.runCancel()
	r.runCtx, r.runCancel = nil, nil
	for i := range r.ahead {
		r.dropLocked(i)
	}
	r.low, r.issued = 0, 0
}

// fetchAheadLocked makes sure blocks up to the window beyond end are
// fetched or being fetched, in chunks of up to FetchSize, starting with the
// blocks of the read [off, end) itself. A chunk is fetched only once the
// whole of it fits in the window (or it reaches the end of the object), so
// reads of a few KiB do not each start a small GET.
func (r *Reader) fetchAheadLocked(off, end int64) {
	c := r.c
	bs := c.blockSize
	target := min(end+r.window, r.obj.Size)
	chunk := min(c.fetchSize, max(bs, r.window/4/bs*bs))
	from := max(r.issued, off/bs)
	for from*bs < target {
		if from*bs+chunk > target && target < r.obj.Size {
			break
		}
		to := (min(from*bs+chunk, r.obj.Size) + bs - 1) / bs
		if !r.claimLocked(from, to) {
			break // out of budget: fetch more when earlier blocks are read
		}
		from = to
		r.issued = to
	}
}

// claimLocked fetches ahead the blocks in [first, to) that are neither
// cached nor already fetched ahead, joining fetches in progress, if the
// budget has room for all of them.
func (r *Reader) claimLocked(first, to int64) bool {
	c := r.c
	var need []int64
	var bytes int64
	for i := first; i < to; i++ {
		if r.ahead[i] != nil || c.has(r.obj, i) {
			continue
		}
		need = append(need, i)
		bytes += c.blockLen(r.obj, i)
	}
	if len(need) == 0 {
		return true
	}
	if !c.budget.tryAcquire(bytes) {
		return false
	}
	var run []*fetch // consecutive blocks to fetch with one GET
	start := int64(0)
	flush := func() {
		if len(run) > 0 {
			c.startRun(r.runCtx, r.obj, start, run)
			run = nil
		}
	}
	for _, i := range need {
		f, mine := c.claim(blockKey(r.obj, i))
		r.ahead[i] = f
		if !mine || (len(run) > 0 && start+int64(len(run)) != i) {
			flush()
		}
		if mine {
			if len(run) == 0 {
				start = i
			}
			run = append(run, f)
		}
	}
	flush()
	return true
}

// consumed lets go of the blocks fetched ahead that the read ending at end
// has read past.
func (r *Reader) consumed(end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.low < r.issued && r.c.blockEnd(r.obj, r.low) <= end {
		r.dropLocked(r.low)
		r.low++
	}
	if r.window > 0 && r.low == r.issued && r.issued*r.c.blockSize >= r.obj.Size {
		// Everything up to the end has been read: leave the budget's
		// share to readers that still need it.
		r.stopLocked()
	}
}

// dropLocked lets go of block i fetched ahead, if it is held.
func (r *Reader) dropLocked(i int64) {
	if f, ok := r.ahead[i]; ok {
		delete(r.ahead, i)
		r.c.budget.release(r.c.blockLen(r.obj, i))
		r.c.unuse(f)
	}
}

// startRun fetches the consecutive blocks of obj from first on, claimed as
// fs, with one GET in the background.
func (c *Cache) startRun(ctx context.Context, obj store.Object, first int64, fs []*fetch) {
	c.closeMu.RLock()
	closed := c.closed
	if !closed {
		c.wg.Add(1) // under closeMu, so that Close waits for it
	}
	c.closeMu.RUnlock()
	if closed {
		for j, f := range fs {
			c.finish(blockKey(obj, first+int64(j)), f, nil, errClosed)
		}
		return
	}
	go func() {
		defer c.wg.Done()
		c.fetchRun(ctx, obj, first, fs)
	}()
}

// fetchRun reads the blocks of obj from first on with one GET pinned to the
// ETag, handing each block to its waiters as soon as it has arrived.
func (c *Cache) fetchRun(ctx context.Context, obj store.Object, first int64, fs []*fetch) {
	last := first + int64(len(fs)) - 1
	off := first * c.blockSize
	n := c.blockEnd(obj, last) - off
	c.log.Debug("cache: fetching ahead", "key", obj.Key, "blocks", len(fs), "off", off, "len", n)
	c.countGet(n)
	lens := make([]int64, len(fs))
	for j := range fs {
		lens[j] = c.blockLen(obj, first+int64(j))
	}
	blocks := c.pool.get(lens)
	bufs := make([][]byte, len(fs))
	for j, b := range blocks {
		bufs[j] = b.data
	}
	next := 0 // the first block not yet handed over
	hand := func(j int, err error) {
		i := first + int64(j)
		if err != nil && ctx.Err() != nil {
			// A reader waiting for this block fetches it itself when the
			// error says the fetch was abandoned, not failed.
			err = context.Cause(ctx)
		}
		var b *block
		var ferr error
		if err == nil {
			b = blocks[j]
		} else {
			ferr = fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
		}
		c.finish(blockKey(obj, i), fs[j], b, ferr)
		// The fetch, the cache and the readers hold their own references
		// now; a block nobody took goes back to the pool.
		blocks[j].release()
	}
	_, err := store.ReadSpans(ctx, c.st, obj.Key, obj.ETag, off, bufs, func(j int) {
		hand(j, nil)
		next = j + 1
	})
	if err == nil {
		return
	}
	for j := next; j < len(fs); j++ {
		hand(j, err)
	}
}

// budget counts the bytes fetched ahead and not yet read, across readers.
type budget struct {
	limit int64

	mu   sync.Mutex
	used int64 // guarded by mu
	peak int64 // guarded by mu
}

// tryAcquire takes n bytes if they fit; it never waits.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func (b *budget) usage() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}
