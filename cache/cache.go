// Package cache serves reads of stored objects from memory.
//
// # Blocks
//
// An object is read in fixed blocks (Options.BlockSize, the last one
// shorter) kept in a ristretto cache whose cost is the block's byte count,
// so Options.MaxBytes bounds the cached data. A block is keyed by (key,
// ETag, index): a changed object has a new ETag and so new keys, and one
// read never mixes two versions. A missing block is one ranged Get pinned to
// the ETag; if the object changed since it was stat'ed, the read fails with
// store.ErrPrecondition and the caller stats again.
//
// # Shared fetches
//
// Concurrent misses of one block make one request: the first reader fetches
// and the others wait for its bytes, which they get directly since
// ristretto's Set is asynchronous and would not show the block yet. If the
// fetching reader gives up (its context ends), a waiter whose context is
// still live fetches for itself. A read spanning several missing blocks
// fetches them in parallel, at most maxParallelFetches at a time.
//
// # Still to come
//
// Read-ahead for sequential readers hooks into ReadAt (see the note there)
// and fetches through the same shared path; the stat/list metadata cache
// with TTLs will live beside this file in this package.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/store"
)

const (
	defaultBlockSize = 1 << 20
	defaultMaxBytes  = 256 << 20
	// maxParallelFetches bounds the blocks one ReadAt fetches at once.
	maxParallelFetches = 8
)

// errClosed is returned by ReadAt after Close.
var errClosed = errors.New("cache: closed")

// Options configures a Cache. Zero values get defaults in New.
type Options struct {
	BlockSize int64 // bytes per cached block; default 1 MiB
	MaxBytes  int64 // ristretto MaxCost; default 256 MiB
	Logger    *slog.Logger
}

// Cache serves reads of stored objects from fixed blocks keyed by (key, ETag, index).
// It is safe for concurrent use.
type Cache struct {
	st        store.Store
	blockSize int64
	log       *slog.Logger
	blocks    *ristretto.Cache[string, []byte]

	mu       sync.Mutex
	inflight map[string]*fetch // guarded by mu

	// closeMu keeps Close from racing with calls into ristretto, whose Set
	// panics on a cache being closed.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu
}

// fetch is one block request in progress, shared by every reader missing
// that block. data and err are set before done is closed.
type fetch struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int // guarded by Cache.mu; readers waiting besides the fetcher
}

// New returns a Cache reading through st.
func New(st store.Store, opts Options) (*Cache, error) {
	if opts.BlockSize <= 0 {
		opts.BlockSize = defaultBlockSize
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Ristretto wants about ten counters per item it may hold.
	counters := max(100, 10*opts.MaxBytes/opts.BlockSize)
	blocks, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        counters,
		MaxCost:            opts.MaxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache{
		st:        st,
		blockSize: opts.BlockSize,
		log:       opts.Logger,
		blocks:    blocks,
		inflight:  make(map[string]*fetch),
	}, nil
}

// ReadAt fills p from obj (Key, ETag, Size) at off; it returns io.EOF at or past
// the end like io.ReaderAt. A changed object yields store.ErrPrecondition.
func (c *Cache) ReadAt(ctx context.Context, obj store.Object, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cache: read %q at negative offset %d", obj.Key, off)
	}
	if off >= obj.Size {
		return 0, io.EOF
	}
	end := obj.Size
	if int64(len(p)) < end-off {
		end = off + int64(len(p))
	}
	n := int(end - off)
	if n > 0 {
		var err error
		if obj.ETag == "" {
			// Without an ETag blocks could mix versions: read around the cache.
			err = c.readDirect(ctx, obj, p[:n], off)
		} else {
			err = c.readBlocks(ctx, obj, p[:n], off)
		}
		if err != nil {
			return 0, err
		}
	}
	// Read-ahead hooks in here: when reads of obj run sequentially, start
	// fetches of the following blocks through c.block in the background.
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBlocks fills p, which lies within obj, from the blocks covering it.
func (c *Cache) readBlocks(ctx context.Context, obj store.Object, p []byte, off int64) error {
	first := off / c.blockSize
	last := (off + int64(len(p)) - 1) / c.blockSize
	// fill copies block i's share of the range into p.
	fill := func(i int64, b []byte) {
		start := i * c.blockSize
		lo := max(off, start)
		hi := min(off+int64(len(p)), start+int64(len(b)))
		copy(p[lo-off:hi-off], b[lo-start:hi-start])
	}
	var missing []int64
	for i := first; i <= last; i++ {
		b, ok, err := c.lookup(obj, i)
		if err != nil {
			return err
		}
		if ok {
			fill(i, b)
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 1 {
		b, err := c.block(ctx, obj, missing[0])
		if err != nil {
			return err
		}
		fill(missing[0], b)
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
			fill(i, b) // blocks fill disjoint parts of p
			return nil
		})
	}
	return g.Wait()
}

// readDirect reads p from obj at off with one unpinned Get.
func (c *Cache) readDirect(ctx context.Context, obj store.Object, p []byte, off int64) error {
	rc, err := c.st.Get(ctx, obj.Key, off, int64(len(p)), "")
	if err != nil {
		return fmt.Errorf("cache: read %q at %d: %w", obj.Key, off, err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, p); err != nil {
		return fmt.Errorf("cache: read %q at %d: %w", obj.Key, off, err)
	}
	return nil
}

// blockLen is the length of block i of obj.
func (c *Cache) blockLen(obj store.Object, i int64) int64 {
	return min(c.blockSize, obj.Size-i*c.blockSize)
}

// blockKey names block i of obj's current version. The key goes last, so
// the name is unambiguous whatever bytes the key holds.
func blockKey(obj store.Object, i int64) string {
	return obj.ETag + "/" + strconv.FormatInt(i, 10) + "/" + obj.Key
}

// lookup returns block i of obj from the cache.
func (c *Cache) lookup(obj store.Object, i int64) ([]byte, bool, error) {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return nil, false, errClosed
	}
	b, ok := c.blocks.Get(blockKey(obj, i))
	if !ok || int64(len(b)) != c.blockLen(obj, i) {
		return nil, false, nil
	}
	return b, true, nil
}

// remember offers block b to the cache; ristretto may decline it.
func (c *Cache) remember(k string, b []byte) {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if !c.closed {
		c.blocks.Set(k, b, int64(len(b)))
	}
}

// block returns block i of obj, from the cache, from a fetch in progress,
// or fetched now. The returned bytes are shared and must not be modified.
func (c *Cache) block(ctx context.Context, obj store.Object, i int64) ([]byte, error) {
	k := blockKey(obj, i)
	for {
		if b, ok, err := c.lookup(obj, i); err != nil || ok {
			return b, err
		}
		c.mu.Lock()
		f, shared := c.inflight[k]
		if shared {
			f.waiters++
		} else {
			f = &fetch{done: make(chan struct{})}
			c.inflight[k] = f
		}
		c.mu.Unlock()

		if !shared {
			f.data, f.err = c.fetch(ctx, obj, i)
			if f.err == nil {
				c.remember(k, f.data)
			}
			c.mu.Lock()
			delete(c.inflight, k)
			c.mu.Unlock()
			close(f.done)
			return f.data, f.err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, context.Cause(ctx))
		}
		if f.err != nil && isContextErr(f.err) && ctx.Err() == nil {
			continue // the fetching reader gave up, not the store: try again
		}
		return f.data, f.err
	}
}

// fetch reads block i of obj from the store, pinned to obj.ETag.
func (c *Cache) fetch(ctx context.Context, obj store.Object, i int64) ([]byte, error) {
	off, n := i*c.blockSize, c.blockLen(obj, i)
	c.log.Debug("cache: fetching block", "key", obj.Key, "block", i, "off", off, "len", n)
	rc, err := c.st.Get(ctx, obj.Key, off, n, obj.ETag)
	if err != nil {
		return nil, fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		// A short body means the object is shorter than obj.Size claims.
		return nil, fmt.Errorf("cache: read %q block %d: %w", obj.Key, i, err)
	}
	return b, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Close releases the cache. ReadAt afterwards fails.
func (c *Cache) Close() {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if !c.closed {
		c.closed = true
		c.blocks.Close()
	}
}
