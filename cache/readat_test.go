package cache

import (
	"context"

	"github.com/partfs/partfs/store"
)

// readerAt reads len(p) bytes at off through r.Slices, as the fs layer
// does, and copies them into p: n and err as io.ReaderAt gives them.
func readerAt(ctx context.Context, r *Reader, p []byte, off int64) (int, error) {
	bs, err := r.Slices(ctx, off, len(p))
	n := 0
	for _, b := range bs {
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
