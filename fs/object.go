package fs

import (
	"context"
	"errors"

	"github.com/partfs/partfs/store"
)

// objectNode is a node backed by one object: a regular file or a symbolic
// link. Rename moves such nodes to a new key through this interface.
type objectNode interface {
	keyNow() string
	// moved records that the node's object now lives at key as obj.
	moved(key string, obj store.Object)
}

var (
	_ objectNode = (*fileNode)(nil)
	_ objectNode = (*symlinkNode)(nil)
)

// The metadata seam: every HEAD this package makes goes through stat, and
// every change it makes to the bucket is announced through changed or
// changedDir once S3 has acted. A metadata cache with TTLs (cache.Meta:
// Stat, Invalidate, InvalidateDir) plugs in here and nowhere else; until one
// is wired, stat asks S3 and the announcements have no listener.
//
// Nothing here takes a lock, so the kernel's parallel LOOKUPs of one
// directory (go-fuse negotiates FUSE_PARALLEL_DIROPS) reach S3 in parallel.

func (fsys *filesystem) stat(ctx context.Context, key string) (store.Object, error) {
	return fsys.opts.Store.Stat(ctx, key)
}

func (fsys *filesystem) changed(keys ...string) {}

func (fsys *filesystem) changedDir(prefix string) {}

// copyObject copies src to dst pinned to src.ETag, in parts above
// Options.MaxCopySize; see store.CopyObject.
func (fsys *filesystem) copyObject(ctx context.Context, src store.Object, dst string, opts *store.PutOptions) (store.Object, error) {
	obj, err := store.CopyObject(ctx, fsys.opts.Store, src, dst, opts, fsys.copyOpts)
	if err == nil {
		fsys.changed(dst)
	}
	return obj, err
}

// setMetadata stores new user metadata on the object obj in place: a
// metadata-replacing copy of the object onto itself, pinned to obj.ETag (a
// multipart copy onto itself above MaxCopySize). md builds the metadata from
// the object's current metadata, so that keys partfs does not own survive.
// When obj is no longer current (another client replaced the object since it
// was read), the object is read again and the change applied to it once more:
// chmod applies to whatever the name holds.
func (fsys *filesystem) setMetadata(ctx context.Context, obj store.Object, md func(store.Metadata) store.Metadata, contentType string) (store.Object, error) {
	fresh := false
	for {
		opts := &store.PutOptions{Metadata: md(obj.Metadata), ContentType: contentType}
		out, err := fsys.copyObject(ctx, obj, obj.Key, opts)
		if err == nil || fresh || !errors.Is(err, store.ErrPrecondition) {
			return out, err
		}
		if obj, err = fsys.stat(ctx, obj.Key); err != nil {
			return store.Object{}, err
		}
		fresh = true
	}
}
