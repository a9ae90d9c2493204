// Package cache serves reads of stored objects from memory. What the
// bucket's listings and HEAD requests said is remembered by package meta.
//
// # Blocks
//
// An object is read in fixed blocks (Options.BlockSize, the last one
// shorter) kept in a ristretto cache whose cost is the block's byte count,
// so Options.MaxBytes bounds the cached data. A block is keyed by (key,
// ETag, index): a changed object has a new ETag and so new keys, and one
// read never mixes two versions. Every Get is pinned to the ETag; if the
// object changed since it was stat'ed, the read fails with
// store.ErrPrecondition and the caller stats again and opens anew. Blocks of
// a replaced or deleted version become unreachable and age out; Forget drops
// them at once.
//
// The default block is 256 KiB. It is both the unit of caching and what a
// random read fetches, so it trades the waste of fetching more than a small
// read needs against per-block overhead. Against a local MinIO a ranged GET
// takes about 2 ms whatever its size up to 1 MiB (4 KiB: 2.1 ms, 256 KiB:
// 2.2 ms, 1 MiB: 2.4 ms, 4 MiB: 5.3 ms), while against AWS S3, where one
// connection moves about 90 MB/s after a first-byte latency of 20-30 ms, a
// 1 MiB block would add about 11 ms to every random 4 KiB read and 256 KiB
// adds about 3 ms. Smaller blocks also keep a random workload's cache from
// filling with bytes nobody asked for. Sequential readers do not pay for the
// small block: read-ahead fetches many blocks per GET (see below).
//
// # Shared fetches
//
// Concurrent misses of one block make one request: the first reader fetches
// and the others wait for its bytes, which they get directly. A fetch stays
// findable until ristretto has taken the block in (its Set is asynchronous),
// so a read just after it does not fetch the block again either. If the
// fetching reader gives up (its context ends), a waiter whose context is
// still live fetches for itself. A read spanning several missing blocks
// fetches them in parallel, at most maxParallelFetches at a time.
//
// # Handles and read-ahead
//
// Open returns a Reader for one open file handle; the fs layer calls
// Reader.Span for every FUSE read of that handle and Reader.Close on
// release. A Reader watches where its reads land. After two reads in a row
// that continue where the previous ones ended, give or take
// Options.SequentialSlack (the kernel sends its own read-ahead as several
// requests in parallel, which arrive slightly out of order), the reader is
// sequential and fetches blocks ahead of the reads: first two blocks; each
// time the reader has consumed half the window it grows four times while
// below an eighth of the budget, then twice, up to the reader's share of
// Options.ReadAheadBytes. Blocks ahead are fetched in chunks of a quarter of
// the window, at most Options.FetchSize (8 MiB by default: against a local
// MinIO, 1 MiB ranged GETs in parallel reach 0.7-0.9 GB/s, 8 MiB GETs
// 1.7-1.8 GB/s), one GET per chunk and several in flight, and each block is
// handed over as soon as its bytes arrive, so a read waiting for the first
// block of a chunk does not wait for the whole chunk. A read that lands
// elsewhere ends the run: the window closes, fetches ahead are canceled and
// their blocks let go. Random readers thus get no read-ahead and one
// block-sized GET per missing block. A reader that has read to the end
// leaves its share of the budget to the others.
//
// One reader's throughput is about ReadAheadBytes / (first-byte latency +
// FetchSize / per-connection rate). BenchmarkColdSequentialModel reads 1 GiB
// against modeled endpoints beside 8 parallel 8 MiB GETs: with the default
// 64 MiB, a MinIO-like endpoint (2 ms) gives 0.99 of the direct throughput
// and an S3-like one (25 ms, 90 MB/s per connection) 0.85; there, 128 MiB
// of read-ahead gives 1.29.
//
// # Memory
//
// Blocks fetched ahead are offered to the block cache as they arrive, and
// are also pinned by their reader until it has read past them, because
// ristretto may decline or evict a block before the reader gets there. The
// pinned bytes are counted against Options.ReadAheadBytes, shared by all
// readers: a reader fetches ahead only what fits (it never waits for budget;
// it fetches less), and each sequential reader's window is capped at an
// equal share of the budget. So the data held is at most MaxBytes +
// ReadAheadBytes, plus the blocks of reads in progress. Stats reports the
// budget in use and its peak.
//
// The memory of blocks is reused rather than allocated for each block (see
// pool): a block counts the references to it (the cache's while ristretto
// keeps it, a fetch's for the readers waiting on it, one per reply in
// flight), and its memory holds another block only once the last is gone.
// A Span handed to the kernel is thus released by the fs layer once the
// reply is written, never earlier.
//
// # Use from the fs layer
//
//	c, err := cache.New(st, opts)      // at mount; c.Close() at unmount
//
//	r := c.Open(obj)                   // OPEN for reading: one Reader per handle
//	sp, err := r.Span(ctx, off, n)     // READ: the bytes as slices of cached blocks; io.EOF at the end
//	sp.Release()                       // once the reply is written
//	r.Close()                          // RELEASE
//	c.Forget(old)                      // optional: free the blocks of a version known to be gone
//
// A read that fails with store.ErrPrecondition means the object changed
// since obj was stat'ed: the fs layer stats again (meta.Cache.Invalidate) and
// opens a new Reader. Reads never return bytes of two versions.
//
// # Locks
//
// Reader.mu is taken before Cache.mu; Cache.closeMu is taken alone, but for
// pool.mu, which ristretto's callbacks take under it (releasing the cache's
// reference). pool.mu is taken last. No lock is held across a store call or
// while waiting for a fetch.
package cache

import (
	"context"
	"errors"
	"fmt"

	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/store"
)

const (
	defaultBlockSize       = 256 << 10
	defaultMaxBytes        = 256 << 20
	defaultReadAheadBytes  = 64 << 20
	defaultFetchSize       = 8 << 20
	defaultSequentialSlack = 4 << 20
	// maxParallelFetches bounds the blocks one ReadAt fetches at once.
	maxParallelFetches = 8
	// maxForget bounds the block keys Forget deletes for one object; the
	// blocks of larger objects are left to age out.
	maxForget = 1 << 20
)

// errClosed is returned by ReadAt after Close.
var errClosed = errors.New("cache: closed")

// Options configures a Cache. Zero values get defaults in New.
type Options struct {
	// BlockSize is the unit of caching and of a random read's GET; default
	// 256 KiB (see the package comment for why).
	BlockSize int64
	// MaxBytes bounds the cached blocks (ristretto's MaxCost); default 256
	// MiB: room for the working set of everyday files and the tail of a
	// large sequential read, small enough to mount on a small machine. A
	// file re-read without any GET must fit whole (a 1 GiB warm re-read
	// wants at least 1 GiB).
	MaxBytes int64
	// ReadAheadBytes bounds the blocks fetched ahead of sequential readers
	// and not yet read, across all readers; default 64 MiB, enough for eight
	// 8 MiB GETs in flight for one reader.
	ReadAheadBytes int64
	// FetchSize is the largest GET read-ahead makes; default 8 MiB.
	FetchSize int64
	// SequentialSlack is how far before or after the end of the previous
	// reads a read may start and still count as sequential. It must cover
	// the reordering of the kernel's parallel read requests, about twice
	// the kernel's read-ahead (go-fuse MaxReadAhead); default 4 MiB.
	SequentialSlack int64

	Logger *slog.Logger
}

// Stats are counters of a Cache since New.
type Stats struct {
	Hits     int64 // blocks found in the cache or fetched ahead
	Misses   int64 // blocks a read had to fetch or wait for
	Gets     int64 // GET requests sent
	GetBytes int64 // bytes those requests asked for
	// ReadAheadBytes is the read-ahead budget in use now, and
	// ReadAheadPeak the most it has been.
	ReadAheadBytes int64
	ReadAheadPeak  int64
}

// Cache serves reads of stored objects from fixed blocks keyed by (key, ETag, index).
// It is safe for concurrent use.
type Cache struct {
	st        store.Store
	blockSize int64
	fetchSize int64 // a multiple of blockSize
	slack     int64
	log       *slog.Logger
	blocks    *ristretto.Cache[string, *block]
	budget    budget
	pool      *pool

	// ctx is the parent of every Reader's context; Close cancels it and
	// waits for the read-ahead fetches (wg) to end.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// sequential counts the readers fetching ahead, to share the budget.
	sequential atomic.Int64
	hits       atomic.Int64
	misses     atomic.Int64
	gets       atomic.Int64
	getBytes   atomic.Int64

	mu       sync.Mutex
	inflight map[string]*fetch // guarded by mu

	// closeMu keeps Close from racing with calls into ristretto, whose Set
	// panics on a cache being closed, and with new read-ahead fetches.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu
}

// fetch is one block request in progress, shared by every reader missing
// that block. data and err are set before done is closed. The readers that
// claimed the fetch are its users until they let go of it (unuse); while
// there are users, the fetch holds a reference to data for them, so that
// each can take its own before letting go.
type fetch struct {
	done  chan struct{}
	data  *block
	err   error
	users int  // guarded by Cache.mu
	holds bool // guarded by Cache.mu; the fetch holds a reference to data
}

// New returns a Cache reading through st. Only the block and read-ahead
// fields of opts are used.
func New(st store.Store, opts Options) (*Cache, error) {
	if opts.BlockSize <= 0 {
		opts.BlockSize = defaultBlockSize
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.ReadAheadBytes <= 0 {
		opts.ReadAheadBytes = defaultReadAheadBytes
	}
	if opts.FetchSize <= 0 {
		opts.FetchSize = defaultFetchSize
	}
	if opts.SequentialSlack <= 0 {
		opts.SequentialSlack = defaultSequentialSlack
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Ristretto wants about ten counters per item it may hold.
	counters := max(100, 10*opts.MaxBytes/opts.BlockSize)
	blocks, err := ristretto.NewCache(&ristretto.Config[string, *block]{
		NumCounters:        counters,
		MaxCost:            opts.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Whether evicted, declined, replaced or deleted, a block that
		// leaves the cache loses the cache's reference.
		OnExit: func(b *block) {
			if b != nil && b.cached.CompareAndSwap(true, false) {
				b.release()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		st:        st,
		blockSize: opts.BlockSize,
		fetchSize: max(opts.BlockSize, opts.FetchSize/opts.BlockSize*opts.BlockSize),
		slack:     opts.SequentialSlack,
		log:       opts.Logger,
		blocks:    blocks,
		budget:    budget{limit: opts.ReadAheadBytes},
		pool:      newPool(opts.BlockSize, int(opts.ReadAheadBytes/opts.BlockSize), nil),
		ctx:       ctx,
		cancel:    cancel,
		inflight:  make(map[string]*fetch),
	}, nil
}

// blockFunc receives the whole of block i with a reference that is now the
// receiver's. Calls for different blocks may run concurrently.
type blockFunc func(i int64, b *block)

// fetchMissing hands each listed block of obj to got, fetching them.
func (c *Cache) fetchMissing(ctx context.Context, obj store.Object, missing []int64, got blockFunc) error {
	if len(missing) == 0 {
		return nil
	}
	c.misses.Add(int64(len(missing)))
	if len(missing) == 1 {
		b, err := c.block(ctx, obj, missing[0])
		if err != nil {
			return err
		}
		got(missing[0], b)
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelFetches)
	for _, i := range missing {
		g.Go(func() error {
			b, err := c.block(gctx, obj, i)
			if err != nil {
				return err
			}
			got(i, b)
			return nil
		})
	}
	return g.Wait()
}

// readDirect reads p from obj at off, bypassing the blocks: an object
// without an ETag could mix versions in them. The one Get is pinned to the
// version its answer names, if any.
func (c *Cache) readDirect(ctx context.Context, obj store.Object, p []byte, off int64) error {
	c.countGet(int64(len(p)))
	if _, err := store.ReadAt(ctx, c.st, obj.Key, "", p, off); err != nil {
		return fmt.Errorf("cache: read %q at %d: %w", obj.Key, off, err)
	}
	return nil
}

func (c *Cache) countGet(n int64) {
	c.gets.Add(1)
	c.getBytes.Add(n)
}

// blockLen is the length of block i of obj.
func (c *Cache) blockLen(obj store.Object, i int64) int64 {
	return min(c.blockSize, obj.Size-i*c.blockSize)
}

// blockEnd is the offset just past block i of obj.
func (c *Cache) blockEnd(obj store.Object, i int64) int64 {
	return min((i+1)*c.blockSize, obj.Size)
}

// blockKey names block i of obj's current version. The key goes last, so
// the name is unambiguous whatever bytes the key holds.
func blockKey(obj store.Object, i int64) string {
	var buf [128]byte // one allocation, for the string, in the usual case
	b := append(buf[:0], obj.ETag...)
	b = append(b, '/')
	b = strconv.AppendInt(b, i, 10)
	b = append(b, '/')
	b = append(b, obj.Key...)
	return string(b)
}

// lookup returns block i of obj from the cache, with a reference for the
// caller.
func (c *Cache) lookup(obj store.Object, i int64) (*block, bool, error) {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return nil, false, errClosed
	}
	b, ok := c.blocks.Get(blockKey(obj, i))
	if !ok || int64(len(b.data)) != c.blockLen(obj, i) || !b.tryHold() {
		return nil, false, nil
	}
	return b, true, nil
}

// has reports whether the cache holds block i of obj.
func (c *Cache) has(obj store.Object, i int64) bool {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return false
	}
	b, ok := c.blocks.Get(blockKey(obj, i))
	return ok && int64(len(b.data)) == c.blockLen(obj, i)
}

// remember offers block b to the cache, with a reference of the cache's own,
// and waits until ristretto has admitted or declined it. Set is
// asynchronous: without the wait, a read arriving after the fetch left
// c.inflight but before the Set took effect would find the block nowhere
// and fetch it again (a sequential reader's next read usually does exactly
// that).
func (c *Cache) remember(k string, b *block) {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return
	}
	// The reference is the cache's before Set: ristretto may decline the
	// block, and let go of it, before Set returns.
	b.hold()
	b.cached.Store(true)
	if !c.blocks.Set(k, b, int64(len(b.data))) {
		if b.cached.CompareAndSwap(true, false) {
			b.release()
		}
		return
	}
	c.blocks.Wait()
}

// claim returns the fetch in progress for block key k, or registers a new
// one that the caller must complete with finish (mine is true). Either way
// the caller is a user of the fetch and lets go of it with unuse.
func (c *Cache) claim(k string) (f *fetch, mine bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.inflight[k]; ok {
		f.users++
		return f, false
	}
	f = &fetch{done: make(chan struct{}), users: 1}
	c.inflight[k] = f
	return f, true
}

// use makes the caller one more user of f, which it already uses or got
// from someone who does; the caller lets go with unuse.
func (c *Cache) use(f *fetch) {
	c.mu.Lock()
	f.users++
	c.mu.Unlock()
}

// unuse ends a use of f; the last user lets go of the fetch's reference to
// its block.
func (c *Cache) unuse(f *fetch) {
	c.mu.Lock()
	f.users--
	var b *block
	if f.users == 0 && f.holds {
		f.holds = false
		b = f.data
	}
	c.mu.Unlock()
	if b != nil {
		b.release()
	}
}

// finish completes a fetch registered by claim: the block goes to the cache
// and to every user. The caller keeps its own reference to b.
func (c *Cache) finish(k string, f *fetch, b *block, err error) {
	if err == nil {
		c.remember(k, b)
	}
	c.mu.Lock()
	f.data, f.err = b, err
	if b != nil && f.users > 0 {
		b.hold()
		f.holds = true
	}
	delete(c.inflight, k)
	c.mu.Unlock()
	close(f.done)
}

// block returns block i of obj, from the cache, from a fetch in progress,
// or fetched now, with a reference for the caller. The bytes are shared
// and must not be modified.
func (c *Cache) block(ctx context.Context, obj store.Object, i int64) (*block, error) {
	k := blockKey(obj, i)
	for {
		if b, ok, err := c.lookup(obj, i); err != nil || ok {
			return b, err
		}
		f, mine := c.claim(k)
		if mine {
			b, err := c.fetch(ctx, obj, i)
			c.finish(k, f, b, err)
			c.unuse(f)
			return b, err
		}
		b, done, err := wait(ctx, f)
		c.unuse(f)
		if !done {
			return nil, fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
		}
		if err != nil && isContextErr(err) && ctx.Err() == nil {
			continue // the fetching reader gave up, not the store: try again
		}
		return b, err
	}
}

// wait returns the result of f once it is done, with a reference to its
// block for the caller, who must be a user of f; or the cause of ctx's end
// (done is false).
func wait(ctx context.Context, f *fetch) (b *block, done bool, err error) {
	select {
	case <-f.done:
		if f.err != nil {
			return nil, true, f.err
		}
		f.data.hold()
		return f.data, true, nil
	case <-ctx.Done():
		return nil, false, context.Cause(ctx)
	}
}

// fetch reads block i of obj from the store, pinned to obj.ETag, into a
// block whose one reference is the caller's.
func (c *Cache) fetch(ctx context.Context, obj store.Object, i int64) (*block, error) {
	off, n := i*c.blockSize, c.blockLen(obj, i)
	c.log.Debug("cache: fetching block", "key", obj.Key, "block", i, "off", off, "len", n)
	c.countGet(n)
	b := c.pool.get([]int64{n})[0]
	if _, err := store.ReadAt(ctx, c.st, obj.Key, obj.ETag, b.data, off); err != nil {
		b.release()
		// A short body means the object is shorter than obj.Size claims.
		return nil, fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
	}
	return b, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Forget drops the cached blocks of obj's version, to give their memory back
// at once when the fs layer knows the version is gone (deleted, renamed,
// replaced by this mount). Correctness never depends on it: another version
// has other keys. Objects of more than a million blocks are left to age out.
func (c *Cache) Forget(obj store.Object) {
	if obj.ETag == "" || obj.Size <= 0 {
		return
	}
	n := (obj.Size + c.blockSize - 1) / c.blockSize
	if n > maxForget {
		return
	}
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return
	}
	for i := range n {
		c.blocks.Del(blockKey(obj, i))
	}
}

// Stats returns the counters of the cache.
func (c *Cache) Stats() Stats {
	used, peak := c.budget.usage()
	return Stats{
		Hits:           c.hits.Load(),
		Misses:         c.misses.Load(),
		Gets:           c.gets.Load(),
		GetBytes:       c.getBytes.Load(),
		ReadAheadBytes: used,
		ReadAheadPeak:  peak,
	}
}

// Close stops every read-ahead fetch, waits for them to end and releases
// the cache. Reads afterwards fail.
func (c *Cache) Close() {
	c.closeMu.Lock()
	already := c.closed
	c.closed = true
	c.closeMu.Unlock()
	if already {
		return
	}
	c.cancel()
	c.wg.Wait()
	c.closeMu.Lock()
	c.blocks.Close()
	c.closeMu.Unlock()
}
