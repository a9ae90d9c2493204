package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/partfs/partfs/meta"
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

// The metadata seam: every HEAD and every listing of a whole directory this
// package makes goes through fsys.meta (meta.Cache), and every change it
// makes to the bucket is announced through changed, changedDir or stored
// once S3 has acted, so that this mount sees its own changes at once. See
// "Consistency" in the package comment.
//
// Nothing here takes a lock of this package, so the kernel's parallel
// LOOKUPs of one directory (go-fuse negotiates FUSE_PARALLEL_DIROPS) reach
// S3 in parallel.

// newMeta returns the metadata cache for opts, whose TTLs New has made
// zero for "no caching" (negative for meta.New). A listing is believed as
// long as a HEAD.
func newMeta(opts Options, log *slog.Logger) *meta.Cache {
	ttl := func(d time.Duration) time.Duration {
		if d <= 0 {
			return -1
		}
		return d
	}
	return meta.New(opts.Store, meta.Options{
		StatTTL:     ttl(opts.StatTTL),
		NegativeTTL: ttl(opts.NegativeTTL),
		ListTTL:     ttl(opts.StatTTL),
		Logger:      log,
	})
}

// stat returns key's object with its metadata, from the cache while fresh.
// The Metadata map is shared and must not be modified.
func (fsys *filesystem) stat(ctx context.Context, key string) (store.Object, error) {
	if fsys.deletingKey(key) {
		return store.Object{}, fmt.Errorf("stat %q: renamed, old name being deleted: %w", key, store.ErrNotExist)
	}
	return fsys.meta.Stat(ctx, key)
}

// statFresh is stat with a HEAD sent now: for changes to the object,
// which must start from what S3 holds (a copy or an edit pinned to a stale
// ETag would fail), not from an answer up to StatTTL old.
func (fsys *filesystem) statFresh(ctx context.Context, key string) (store.Object, error) {
	fsys.meta.Invalidate(key)
	return fsys.stat(ctx, key)
}

// changed announces that this mount changed or deleted the objects keys
// (a directory marker "name/" included).
func (fsys *filesystem) changed(keys ...string) {
	for _, key := range keys {
		fsys.meta.Invalidate(key)
	}
}

// removed announces that this mount deleted key: the next stat of it
// needs no request.
func (fsys *filesystem) removed(key string) {
	fsys.meta.Removed(key)
}

// changedDir announces that this mount moved or removed everything under
// prefix.
func (fsys *filesystem) changedDir(prefix string) {
	fsys.meta.InvalidateDir(prefix)
}

// stored announces that this mount stored obj, whose metadata is exactly
// obj.Metadata: the next stat of its key needs no request. An object whose
// reply lacked what a stat reports is only invalidated.
func (fsys *filesystem) stored(obj store.Object) {
	fsys.storedAgain(obj.Key)
	if obj.ETag == "" || obj.Metadata == nil {
		fsys.changed(obj.Key)
		return
	}
	fsys.meta.Update(obj)
}

// copyObject copies src to dst pinned to src.ETag, in parts above
// Options.MaxCopySize; see store.CopyObject. The copy's metadata is known
// (opts', or src's when it has them), so the next stat of dst needs no
// request.
func (fsys *filesystem) copyObject(ctx context.Context, src store.Object, dst string, opts *store.PutOptions) (store.Object, error) {
	obj, err := store.CopyObject(ctx, fsys.opts.Store, src, dst, opts, fsys.copyOpts)
	if err == nil {
		fsys.stored(obj)
	}
	return obj, err
}

// setMetadata stores new user metadata on the object obj in place: a
// metadata-replacing copy of the object onto itself, pinned to obj.ETag (a
// multipart copy onto itself above MaxCopySize). md builds the metadata from
// the object's current metadata, so that keys partfs does not own survive.
// When obj is no longer current (another client replaced the object since it
// was read), the object is read again and the change applied to it once more:
// chmod applies to whatever the name holds. It returns the stored object,
// with the metadata sent, and whether its bytes are those of obj.
func (fsys *filesystem) setMetadata(ctx context.Context, obj store.Object, md func(store.Metadata) store.Metadata, contentType string) (stored store.Object, same bool, err error) {
	same = true
	for {
		opts := &store.PutOptions{Metadata: md(obj.Metadata), ContentType: contentType}
		out, err := fsys.copyObject(ctx, obj, obj.Key, opts)
		if err == nil {
			out.Metadata = opts.Metadata
			return out, same, nil
		}
		if !same || !errors.Is(err, store.ErrPrecondition) {
			return out, same, err
		}
		if obj, err = fsys.statFresh(ctx, obj.Key); err != nil {
			return store.Object{}, false, err
		}
		same = false
	}
}
