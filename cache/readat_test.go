package cache

import (
	"context"

	"github.com/partfs/partfs/store"
)

// readerAt reads len(p) bytes at off through r.Span, as the fs layer
// does, and copies them into p: n and err as io.ReaderAt gives them.
func readerAt(ctx context.Context, r *Reader, p []byte, off int64) (int, error) {
	sp, err := r.Span(ctx, off, len(p))
	if sp == nil {
		return 0, err
	}
	defer sp.Release()
	n := 0
	for _, b := range sp.Slices() {
		n += copy(p[n:], b)
	}
	return n, err
}

// cacheReadAt is one read through a fresh Reader, which reads no blocks
// ahead for it.
func cacheReadAt(c *Cache, ctx context.Context, obj store.Object, p []byte, off int64) (int, error) {
	r := c.Open(obj)
	defer r.Close()
	return readerAt(ctx, r, p, off)
}
