package writeback

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/partfs/partfs/store"
)

// File is one file's dirty state. Its methods are safe for concurrent use.
//
// The bytes of a dirty file are laid out as: [0, copied) copied from the base
// object server-side; [copied, sealed) in parts already sent; [sealed, end)
// in buf; [end, size) zeros (a file extended by truncate or by a write past
// its end). A file that is not dirty is exactly its base.
type File struct {
	w   *Writer
	key string

	// Read without opMu so that stat never waits behind a slow write.
	sizeNow  atomic.Int64
	dirtyNow atomic.Bool

	opMu     sync.Mutex
	opts     store.PutOptions // guarded by opMu
	base     *store.Object    // stored object the file starts from; guarded by opMu
	size     int64            // guarded by opMu
	dirty    bool             // guarded by opMu
	up       *upload          // nil until the first part seals; guarded by opMu
	copied   int64            // guarded by opMu
	sealed   int64            // guarded by opMu
	buf      []byte           // guarded by opMu
	nextPart int              // guarded by opMu
	err      error            // a failure already reported; sticky until truncated to 0; guarded by opMu
}

// Key is the object key the file is written to.
func (f *File) Key() string { return f.key }

// Size is the file's current size as the application sees it.
func (f *File) Size() int64 { return f.sizeNow.Load() }

// Dirty reports whether the file has changes not yet durable in S3.
func (f *File) Dirty() bool { return f.dirtyNow.Load() }

// SetOptions replaces the metadata used when the object is next stored.
func (f *File) SetOptions(opts store.PutOptions) {
	f.opMu.Lock()
	f.opts = opts
	f.opMu.Unlock()
}

func (f *File) end() int64 { return f.sealed + int64(len(f.buf)) }

func (f *File) publishLocked() {
	f.sizeNow.Store(f.size)
	f.dirtyNow.Store(f.dirty)
}

// WriteAt writes p at off. It may wait for buffer memory; ctx cancels the wait.
func (f *File) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if err := f.usableLocked(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !f.dirty {
		if err := f.adoptLocked(ctx, f.size, off); err != nil {
			return 0, err
		}
	}
	if off < f.sealed {
		return 0, fmt.Errorf("write at %d of %q, below the %d bytes already sent: %w", off, f.key, f.sealed, ErrUnsupported)
	}
	if err := f.fillLocked(ctx, off); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		i := int(off - f.sealed)
		if i == len(f.buf) {
			if err := f.roomLocked(ctx); err != nil {
				return n, err
			}
			i = int(off - f.sealed)
		}
		var c int
		if i < len(f.buf) {
			c = copy(f.buf[i:], p[n:])
		} else {
			c = min(f.room(), len(p)-n)
			f.buf = append(f.buf, p[n:n+c]...)
		}
		n += c
		off += int64(c)
		f.size = max(f.size, off)
	}
	return n, nil
}

// usableLocked reports a failure that the application has not seen yet, or
// has seen and not cleared.
func (f *File) usableLocked() error {
	if f.err != nil {
		return f.err
	}
	if f.up != nil {
		return f.up.failure()
	}
	return nil
}

// room is how many bytes can be appended to buf without sealing or growing.
func (f *File) room() int {
	limit := min(int64(cap(f.buf)), f.w.plan.Size(f.nextPart))
	return int(limit) - len(f.buf)
}

// roomLocked makes room for at least one more byte at the end of buf: it
// seals a full part and grows a buffer that has reached its capacity.
func (f *File) roomLocked(ctx context.Context) error {
	if int64(len(f.buf)) >= f.w.plan.Size(f.nextPart) {
		if err := f.sealLocked(ctx); err != nil {
			return err
		}
	}
	if f.nextPart > f.w.plan.MaxParts {
		return fmt.Errorf("%q would exceed %d bytes, the most %d parts hold with this write buffer: %w",
			f.key, f.end(), f.w.plan.MaxParts, store.ErrTooLarge)
	}
	if f.room() > 0 {
		return nil
	}
	return f.growLocked(ctx, int64(len(f.buf))+1)
}

// growLocked gives buf a capacity of at least n bytes (at most the part size).
// A file's first buffer starts small and doubles up to smallBuffer, so small
// files pay little; past that the whole part is paid for at once. Every file
// then waits for memory at most once per part while holding a partly filled
// buffer, so files that are being written cannot starve one another: each
// buffer paid for in full can fill, seal and be freed by its upload.
func (f *File) growLocked(ctx context.Context, n int64) error {
	target := f.w.plan.Size(f.nextPart)
	size := target
	if f.sealed == 0 {
		size = max(int64(cap(f.buf))*2, firstBuffer)
		for size < n {
			size *= 2
		}
		if size > smallBuffer {
			size = target
		}
		size = min(size, target)
	}
	if size <= int64(cap(f.buf)) {
		return nil
	}
	b, err := f.w.buffer(ctx, size)
	if err != nil {
		return err
	}
	b = append(b, f.buf...)
	f.w.recycle(f.buf)
	f.buf = b
	return nil
}

// fillLocked extends the file with zeros up to off.
func (f *File) fillLocked(ctx context.Context, off int64) error {
	for f.end() < off {
		if f.room() == 0 {
			if err := f.roomLocked(ctx); err != nil {
				return err
			}
		}
		old := len(f.buf)
		c := min(int64(f.room()), off-f.end())
		f.buf = f.buf[:old+int(c)]
		clear(f.buf[old:])
	}
	f.size = max(f.size, off)
	return nil
}

// sealLocked sends buf as the next part, starting the multipart upload first
// if this is the file's first part.
func (f *File) sealLocked(ctx context.Context) error {
	if f.up == nil {
		up, err := f.w.startUpload(ctx, f.key, f.opts)
		if err != nil {
			return err
		}
		f.up = up
	}
	f.up.sendPart(f.nextPart, f.buf)
	f.sealed += int64(len(f.buf))
	f.buf = nil
	f.nextPart++
	return nil
}

// adoptLocked makes the base object the start of the dirty file before a
// change at offset lo, keeping its first keep bytes. A base that fits in
// the first part is read into the buffer; a larger one is copied
// server-side, which only allows changes at or past its end.
func (f *File) adoptLocked(ctx context.Context, keep, lo int64) error {
	f.dirty = true
	if f.base == nil || keep == 0 {
		return nil
	}
	if keep <= f.w.plan.Size(1) {
		if err := f.growLocked(ctx, keep); err != nil {
			f.dirty = false
			return err
		}
		f.buf = f.buf[:keep]
		if err := f.readBase(ctx, f.buf, 0); err != nil {
			f.w.recycle(f.buf)
			f.buf, f.dirty = nil, false
			return err
		}
		return nil
	}
	if lo < keep {
		f.dirty = false
		return fmt.Errorf("change at %d inside the %d stored bytes of %q: %w", lo, keep, f.key, ErrUnsupported)
	}
	if f.up == nil {
		up, err := f.w.startUpload(ctx, f.key, f.opts)
		if err != nil {
			f.dirty = false
			return err
		}
		f.up = up
	}
	// Split into near-equal ranges of at most 5 GiB; each is at least 5 MiB
	// because keep is larger than one part.
	count := (keep + store.MaxPartSize - 1) / store.MaxPartSize
	chunk := (keep + count - 1) / count
	for off := int64(0); off < keep; off += chunk {
		f.up.copyPart(f.nextPart, *f.base, off, min(chunk, keep-off))
		f.nextPart++
	}
	f.copied, f.sealed = keep, keep
	return nil
}

// readBase fills p from the base object at off, pinned to its ETag.
func (f *File) readBase(ctx context.Context, p []byte, off int64) error {
	rc, err := f.w.st.Get(ctx, f.base.Key, off, int64(len(p)), f.base.ETag)
	if err != nil {
		return fmt.Errorf("read %q at %d: %w", f.key, off, err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, p); err != nil {
		return fmt.Errorf("read %q at %d: %w", f.key, off, err)
	}
	return nil
}

// ReadAt reads the file as the application wrote it. Bytes that are in
// parts already sent can only be read back once they are stored, so such a
// read first makes the file durable, as fsync would.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if off >= f.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), f.size-off)
	if f.dirty && off < f.sealed && off+want > f.copied {
		if _, err := f.syncLocked(ctx); err != nil {
			return 0, err
		}
	}
	if !f.dirty {
		if err := f.readBase(ctx, p[:want], off); err != nil {
			return 0, err
		}
		return f.short(want, len(p))
	}
	for pos := off; pos < off+want; {
		q := p[pos-off : want]
		var c int64
		switch {
		case pos < f.copied:
			c = min(int64(len(q)), f.copied-pos)
			if err := f.readBase(ctx, q[:c], pos); err != nil {
				return int(pos - off), err
			}
		case pos < f.end():
			c = int64(copy(q, f.buf[pos-f.sealed:]))
		default:
			c = int64(len(q))
			clear(q)
		}
		pos += c
	}
	return f.short(want, len(p))
}

func (f *File) short(got int64, asked int) (int, error) {
	if int(got) < asked {
		return int(got), io.EOF
	}
	return int(got), nil
}

// Truncate sets the file's size. Truncating to zero also clears a failure
// already reported, as O_TRUNC starts the file anew.
func (f *File) Truncate(ctx context.Context, size int64) error {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if size == 0 {
		f.dropLocked()
		f.base, f.err, f.size, f.dirty = nil, nil, 0, true
		return nil
	}
	if err := f.usableLocked(); err != nil {
		return err
	}
	if size == f.size {
		return nil
	}
	if !f.dirty {
		if err := f.adoptLocked(ctx, min(size, f.size), size); err != nil {
			return err
		}
	}
	if size < f.sealed {
		return fmt.Errorf("truncate %q to %d, below the %d bytes already sent: %w", f.key, size, f.sealed, ErrUnsupported)
	}
	if size < f.end() {
		f.buf = f.buf[:size-f.sealed]
	}
	f.size = size
	return nil
}

// Sync makes every change durable (PutObject, or the last part and
// CompleteMultipart) and returns the stored object. The File stays usable:
// later writes edit the object just stored. A failure aborts the upload,
// drops the changes and is returned, here and by later calls, until the
// file is truncated to zero. A cancelled ctx returns early and keeps the
// changes for a later Sync.
func (f *File) Sync(ctx context.Context) (store.Object, error) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if f.err != nil {
		return store.Object{}, f.err
	}
	return f.syncLocked(ctx)
}

func (f *File) syncLocked(ctx context.Context) (store.Object, error) {
	if !f.dirty {
		if f.base == nil {
			return store.Object{Key: f.key}, nil
		}
		return *f.base, nil
	}
	obj, err := f.storeLocked(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return store.Object{}, err
		}
		f.w.log.Error("write failed; changes dropped", "key", f.key, "err", err)
		f.dropLocked()
		f.size, f.dirty, f.err = 0, false, err
		if f.base != nil {
			f.size = f.base.Size
		}
		return store.Object{}, err
	}
	obj.Key, obj.Size = f.key, f.size
	if obj.Metadata == nil {
		obj.Metadata = f.opts.Metadata
	}
	f.up = nil // completed: nothing to abort
	f.dropLocked()
	f.base, f.size, f.dirty = &obj, obj.Size, false
	return obj, nil
}

func (f *File) storeLocked(ctx context.Context) (store.Object, error) {
	if err := f.usableLocked(); err != nil {
		return store.Object{}, err
	}
	if err := f.fillLocked(ctx, f.size); err != nil {
		return store.Object{}, err
	}
	if f.up == nil {
		obj, err := f.w.st.Put(ctx, f.key, f.buf, md5.Sum(f.buf), f.opts)
		if err != nil {
			return store.Object{}, fmt.Errorf("put %q (%d bytes): %w", f.key, len(f.buf), err)
		}
		return obj, nil
	}
	if len(f.buf) > 0 {
		if err := f.sealLocked(ctx); err != nil {
			return store.Object{}, err
		}
	}
	return f.up.complete(ctx)
}

// dropLocked discards the changes: the upload is aborted and the buffer freed.
func (f *File) dropLocked() {
	if f.up != nil {
		f.up.abort()
		f.up = nil
	}
	f.w.recycle(f.buf)
	f.buf = nil
	f.copied, f.sealed, f.nextPart = 0, 0, 1
}

// Discard drops the dirty state, aborting any multipart upload. The File must
// not be used afterwards.
func (f *File) Discard(ctx context.Context) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	f.dropLocked()
	f.dirty = false
	f.publishLocked()
}
