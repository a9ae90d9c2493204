package writeback

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"

	"github.com/partfs/partfs/store"
)

// Truncate sets the file's size. Truncating to zero also clears a failure
// already reported, as O_TRUNC starts the file anew.
func (f *File) Truncate(ctx context.Context, size int64) error {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if size == 0 {
		f.dropLocked()
		f.base, f.err, f.size, f.dirty = nil, nil, 0, false
		f.editLocked()
		return nil
	}
	if err := f.usableLocked(); err != nil {
		return err
	}
	if size > f.w.plan.MaxSize() {
		return fmt.Errorf("truncate %q to %d, past the %d bytes that %d parts hold: %w", f.key, size, f.w.plan.MaxSize(), f.w.plan.MaxParts, store.ErrTooLarge)
	}
	if size == f.size {
		return nil
	}
	f.editLocked()
	if size > f.size {
		if err := f.growLocked(ctx, size); err != nil {
			return err
		}
		f.size = size
		return nil
	}
	return f.shrinkLocked(ctx, size)
}

func (f *File) shrinkLocked(ctx context.Context, size int64) error {
	plan := &f.w.plan
	for k, n := range f.sent {
		start := plan.Start(k)
		if start >= size {
			delete(f.sent, k) // left out of the completed object
		} else if start+n > size {
			if err := f.checkpointLocked(ctx); err != nil {
				return err
			}
			return f.shrinkLocked(ctx, size)
		}
	}
	for k, s := range f.staged {
		start := plan.Start(k)
		switch {
		case start >= size:
			f.dropStageLocked(k)
		case start+s.sent > size:
			// Into pieces already sent.
			if err := f.checkpointLocked(ctx); err != nil {
				return err
			}
			return f.shrinkLocked(ctx, size)
		case start+s.sent+int64(len(s.piece.buf)) > size:
			s.piece.buf = s.piece.buf[:size-start-s.sent]
			s.piece.valid = s.piece.valid.cut(size - start - s.sent)
		}
	}
	for k, s := range f.open {
		start := plan.Start(k)
		switch {
		case start >= size:
			f.recycleLocked(s.buf)
			delete(f.open, k)
		case start+int64(len(s.buf)) > size:
			s.buf = s.buf[:size-start]
			s.valid = s.valid.cut(size - start)
		}
	}
	f.baseLimit = min(f.baseLimit, size)
	f.size = size
	return nil
}

// Sync makes every change durable (PutObject, or the remaining parts and
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
	if err != nil && ctx.Err() == nil && f.conflictLocked(ctx, err) {
		obj, err = f.storeLocked(ctx) // under the conflict key
	}
	if c := f.conflict; c != nil && err == nil {
		return store.Object{}, f.conflictStoredLocked(c)
	}
	if c := f.conflict; c != nil {
		// The conflict copy failed too: the error says both.
		err = fmt.Errorf("%w; storing the changes as %q failed as well: %v", c.Err, c.CopyKey, err)
		f.setKeyLocked(c.Key)
		f.conflict = nil
		f.noteConflictLocked("", "storing the conflict copy failed")
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return store.Object{}, err
		}
		f.w.failures.failed(f.key, err)
		if f.w.keepUnsent && f.up == nil && len(f.staged) == 0 && len(f.sent) == 0 && !errors.Is(err, store.ErrPrecondition) {
			// Nothing went out in parts: the bytes are all at hand, and
			// stay for the next Sync.
			return store.Object{}, err
		}
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
	f.w.failures.stored(f.key)
	f.dropLocked()
	f.base, f.size, f.dirty = &obj, obj.Size, false
	f.storedCondLocked(obj)
	return obj, nil
}

// conflictStoredLocked ends a Sync whose changes were stored under the
// conflict key: the file goes back to its key, on the version the other
// writer stored, and the lost race is the error, here and (like any
// failure) for later calls until the file is truncated to zero.
func (f *File) conflictStoredLocked(c *ConflictError) error {
	f.up = nil // completed under the conflict key
	f.dropLocked()
	f.noteConflictLocked(c.CopyKey, "")
	f.setKeyLocked(c.Key)
	f.conflict = nil
	f.dirty, f.err = false, c
	f.size = 0
	f.cond = store.Condition{IfNoneMatch: true}
	if f.base != nil {
		f.size = f.base.Size
		f.cond = store.Condition{IfMatch: f.base.ETag}
	}
	return c
}

func (f *File) storeLocked(ctx context.Context) (store.Object, error) {
	if err := f.usableLocked(); err != nil {
		return store.Object{}, err
	}
	plan := &f.w.plan
	last := 0
	if f.size > 0 {
		last = plan.Part(f.size - 1)
	}
	if f.up == nil && last <= 1 {
		return f.putLocked(ctx)
	}
	if err := f.startLocked(ctx); err != nil {
		return store.Object{}, err
	}
	for k := 1; k <= last; k++ {
		if err := f.storePartLocked(ctx, k); err != nil {
			return store.Object{}, err
		}
	}
	return f.up.complete(ctx, last)
}

// storePartLocked sends part k as its state asks: an open part is sealed, a
// staged one finished, an untouched one within the base copied from it
// server-side, and one past the base filled with zeros and sent.
func (f *File) storePartLocked(ctx context.Context, k int) error {
	plan := &f.w.plan
	start := plan.Start(k)
	length := min(plan.Size(k), f.size-start)
	state := f.stateLocked(k)
	switch {
	case state == partSent:
		if n := f.sent[k]; n != length {
			return fmt.Errorf("part %d of %q was sent with %d bytes, needs %d", k, f.key, n, length)
		}
		return nil
	case state == partStaged:
		return f.finishLocked(ctx, k)
	case state == partUntouched && start+length <= f.baseLimit:
		f.up.copyPart(k, *f.base, start, length)
		f.sent[k] = length
		return nil
	case f.w.staged(k):
		// Bytes past the base: a part too large to buffer whole goes out
		// in pieces like one written.
		if _, err := f.stageLocked(ctx, k); err != nil {
			return err
		}
		return f.finishLocked(ctx, k)
	case state == partUntouched:
		if _, err := f.slotLocked(ctx, k); err != nil {
			return err
		}
	}
	return f.sealLocked(ctx, k)
}

// putLocked stores a file of at most one part with a single PutObject.
func (f *File) putLocked(ctx context.Context) (store.Object, error) {
	var body []byte
	if f.size > 0 {
		s, err := f.slotLocked(ctx, 1)
		if err != nil {
			return store.Object{}, err
		}
		if err := f.completeSlotLocked(ctx, 1, s, f.size); err != nil {
			return store.Object{}, err
		}
		body = s.buf[:f.size]
	}
	obj, err := f.w.st.Put(ctx, f.key, body, md5.Sum(body), f.putOptionsLocked())
	if err != nil {
		return store.Object{}, fmt.Errorf("put %q (%d bytes): %w", f.key, len(body), err)
	}
	return obj, nil
}

// dropLocked discards the changes: the uploads are aborted and the buffers freed.
func (f *File) dropLocked() {
	if f.up != nil {
		f.up.abort()
		f.up = nil
	}
	for k := range f.staged {
		f.dropStageLocked(k)
	}
	for _, s := range f.open {
		f.recycleLocked(s.buf)
	}
	f.open, f.staged, f.sent = nil, nil, nil
}

// Discard drops the dirty state, aborting any multipart upload. The File must
// not be used afterwards.
func (f *File) Discard() {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	f.dropLocked()
	f.dirty = false
	f.publishLocked()
}
