package store

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// DefaultCopyPartSize is the length of one UploadPartCopy range when
// CopyOptions.PartSize is zero: small enough that a large copy runs as many
// parallel requests, large enough that a 5 TB object needs few of them.
const DefaultCopyPartSize int64 = 512 << 20

// CopyOptions tunes CopyObject. Zero values get defaults.
type CopyOptions struct {
	// MaxSingle is the largest object copied with one Copy request; larger
	// objects are copied in parts. Default and upper bound MaxPartSize.
	// Tests lower it together with a fake store's part limit.
	MaxSingle int64
	// PartSize is the length of each UploadPartCopy range: default
	// DefaultCopyPartSize, at most MaxSingle, and raised when the object
	// would otherwise need more than MaxParts parts.
	PartSize int64
	// Concurrency bounds the UploadPartCopy requests of one copy in flight;
	// default 8.
	Concurrency int
}

func (co CopyOptions) withDefaults() CopyOptions {
	if co.MaxSingle <= 0 || co.MaxSingle > MaxPartSize {
		co.MaxSingle = MaxPartSize
	}
	if co.PartSize <= 0 {
		co.PartSize = DefaultCopyPartSize
	}
	co.PartSize = min(co.PartSize, co.MaxSingle)
	if co.Concurrency <= 0 {
		co.Concurrency = 8
	}
	return co
}

// CopyObject copies src to dst server-side, pinned to src.ETag (the copy
// fails with ErrPrecondition if src changed), whatever src's size: up to
// co.MaxSingle with one Copy, above it as a multipart upload of dst whose
// parts are UploadPartCopy ranges of src sent in parallel, every range but
// the last of the same size.
//
// A nil opts keeps src's metadata. One Copy keeps it on the server; a
// multipart upload cannot inherit it, so it is created with src.Metadata
// (read with Stat first when src.Metadata is nil; the Content-Type is then
// not kept). A non-nil opts replaces the metadata, and with dst == src.Key
// rewrites an object's metadata in place, which is how S3 changes it.
//
// opts.Cond is checked only by a copy in parts, when its upload completes:
// Store.Copy carries no condition, so a single Copy replaces whatever dst
// holds.
//
// On failure the multipart upload is aborted and dst is left as it was. The
// returned Object carries the metadata dst was given when it is known.
func CopyObject(ctx context.Context, st Store, src Object, dst string, opts *PutOptions, co CopyOptions) (Object, error) {
	co = co.withDefaults()
	if src.Size <= co.MaxSingle {
		obj, err := st.Copy(ctx, src.Key, dst, src.ETag, opts)
		if err != nil {
			return Object{}, err
		}
		if src.ETag != "" || obj.Size < 0 {
			obj.Size = src.Size // the pinned version's bytes
		}
		obj.Metadata = src.Metadata
		if opts != nil {
			obj.Metadata = opts.Metadata
		}
		return obj, nil
	}
	if opts == nil {
		if src.Metadata == nil {
			fresh, err := st.Stat(ctx, src.Key)
			if err != nil {
				return Object{}, fmt.Errorf("copy %q: %w", src.Key, err)
			}
			if src.ETag != "" && fresh.ETag != src.ETag {
				return Object{}, fmt.Errorf("copy %q pinned to %s, now %s: %w", src.Key, src.ETag, fresh.ETag, ErrPrecondition)
			}
			src.Metadata = fresh.Metadata
		}
		opts = &PutOptions{Metadata: src.Metadata}
	}
	obj, err := copyParts(ctx, st, src, dst, *opts, co)
	if err != nil {
		return Object{}, fmt.Errorf("multipart copy of %q (%d bytes) to %q: %w", src.Key, src.Size, dst, err)
	}
	obj.Metadata = opts.Metadata
	obj.Size = src.Size // a copy holds the same bytes
	return obj, nil
}

// copyParts is the multipart half of CopyObject.
func copyParts(ctx context.Context, st Store, src Object, dst string, opts PutOptions, co CopyOptions) (Object, error) {
	size := co.PartSize
	if count := (src.Size + size - 1) / size; count > MaxParts {
		size = (src.Size + MaxParts - 1) / MaxParts
		if size > co.MaxSingle {
			return Object{}, ErrTooLarge
		}
	}
	count := int((src.Size + size - 1) / size)

	id, err := st.CreateMultipart(ctx, dst, opts)
	if err != nil {
		return Object{}, err
	}
	parts := make([]Part, count)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(co.Concurrency)
	for i := range count {
		off := int64(i) * size
		length := min(size, src.Size-off)
		g.Go(func() error {
			p, err := st.UploadPartCopy(gctx, dst, id, int32(i+1), src.Key, src.ETag, off, length)
			if err != nil {
				return fmt.Errorf("part %d: %w", i+1, err)
			}
			parts[i] = p
			return nil
		})
	}
	err = g.Wait()
	var obj Object
	if err == nil {
		obj, err = st.CompleteMultipart(ctx, dst, id, parts, opts.Cond)
	}
	if err != nil {
		// Parts cost money until the upload is aborted, even when the
		// caller has given up.
		if aerr := st.AbortMultipart(context.WithoutCancel(ctx), dst, id); aerr != nil {
			return Object{}, fmt.Errorf("%w (and abort of upload %s failed: %v)", err, id, aerr)
		}
		return Object{}, err
	}
	obj.Key = dst
	return obj, nil
}
