package writeback

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/partfs/partfs/store"
)

// File is one file's dirty state. Its methods are safe for concurrent use.
//
// A dirty file is cut into the parts of the Writer's Plan: part n always
// holds bytes [Start(n), Start(n+1)). Each part is in one of four states
// (partState, state.go): open, staged, sent or untouched. checkLocked
// states the invariants that hold between operations.
//
// Sync sends the open parts, finishes the staged ones, copies the untouched
// ones server-side and completes the upload. A change to bytes already sent
// needs bytes that are gone, so the file is made durable first (a
// checkpoint, as fsync would) and edited further from there.
type File struct {
	w   *Writer
	key string // guarded by opMu; changed only by Rekey

	keyNow atomic.Pointer[string] // key, for Key without opMu

	// Read without opMu so that stat never waits behind a slow write.
	sizeNow  atomic.Int64
	dirtyNow atomic.Bool

	opMu      sync.Mutex
	opts      store.PutOptions // guarded by opMu
	base      *store.Object    // the stored object the file starts from; guarded by opMu
	baseLimit int64            // base bytes past this were truncated away; guarded by opMu
	size      int64            // guarded by opMu
	dirty     bool             // guarded by opMu
	up        *upload          // nil until the first part goes out; guarded by opMu
	open      map[int]*slot    // guarded by opMu
	staged    map[int]*stage   // guarded by opMu
	sent      map[int]int64    // part number -> bytes sent; guarded by opMu
	held      int64            // bytes of the buffers of open and staged parts, taken from the budget; guarded by opMu
	tick      uint64           // guarded by opMu
	busy      []int            // parts being filled while memory is made; guarded by opMu
	err       error            // a failure already reported; sticky until truncated to 0; guarded by opMu
	// cond is what the next write of the changes requires of the object it
	// replaces (conflict.go); it follows each version stored. guarded by opMu
	cond store.Condition
	// conflict is set while the changes are being stored under a conflict
	// key (conflict.go). guarded by opMu
	conflict *ConflictError
}

// slot is the buffer of one open part.
type slot struct {
	buf   []byte // the part's first len(buf) bytes; capacity at most the part size
	valid spans  // offsets in buf holding the file's bytes; the rest is base or zeros
	used  uint64 // File.tick of the last write, for eviction
}

// Stored returns the stored object when the file has no changes, so that
// reads can go through the block cache.
func (f *File) Stored() (store.Object, bool) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	if f.dirty || f.base == nil {
		return store.Object{}, false
	}
	return *f.base, true
}

// Key is the object key the file is written to.
func (f *File) Key() string { return *f.keyNow.Load() }

// Rekey moves the file's changes to key, as a rename does, when nothing of
// them has gone out yet and nothing is needed from a stored object: a new
// or truncated file that has sent no part and started no multipart upload.
// It reports whether it did; otherwise nothing changes, and the caller
// stores the file under its key first and copies it.
//
// cond is what the write under the new key requires of the object it
// replaces there (see Writer.Open).
func (f *File) Rekey(key string, cond store.Condition) bool {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	if f.base != nil || f.up != nil || len(f.staged) > 0 || len(f.sent) > 0 || f.err != nil {
		return false
	}
	f.w.failures.moved(f.key, key)
	f.setKeyLocked(key)
	f.cond = cond
	return true
}

// setKeyLocked points the file at key.
func (f *File) setKeyLocked(key string) {
	f.key = key
	f.keyNow.Store(&key)
}

// Size is the file's current size as the application sees it.
func (f *File) Size() int64 { return f.sizeNow.Load() }

// Dirty reports whether the file has changes not yet durable in S3.
func (f *File) Dirty() bool { return f.dirtyNow.Load() }

// SetOptions replaces the metadata used when the object is next stored. A
// multipart upload already under way keeps the metadata it was created
// with: Sync's Object says what was stored.
func (f *File) SetOptions(opts store.PutOptions) {
	f.opMu.Lock()
	f.opts = opts
	f.opMu.Unlock()
}

func (f *File) publishLocked() {
	f.sizeNow.Store(f.size)
	f.dirtyNow.Store(f.dirty)
}

// usableLocked reports a failure that the application has not seen yet, or
// has seen and not cleared.
func (f *File) usableLocked() error {
	if f.err != nil {
		return f.err
	}
	if f.up != nil {
		if err := f.up.failure(); err != nil {
			return err
		}
	}
	return f.stageFailureLocked()
}

// editLocked starts a dirty state on top of the base.
func (f *File) editLocked() {
	if f.dirty {
		return
	}
	f.dirty = true
	f.baseLimit = f.size
	f.open = map[int]*slot{}
	f.staged = map[int]*stage{}
	f.sent = map[int]int64{}
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
	plan := &f.w.plan
	if end := off + int64(len(p)); end > plan.MaxSize() {
		return 0, fmt.Errorf("%q would reach %d bytes, more than the %d that %d parts hold: %w",
			f.key, end, plan.MaxSize(), plan.MaxParts, store.ErrTooLarge)
	}
	f.editLocked()
	if err := f.growLocked(ctx, off+int64(len(p))); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		k := plan.Part(pos)
		if f.sentAtLocked(k, pos) {
			if err := f.checkpointLocked(ctx); err != nil {
				return n, err
			}
			continue
		}
		if f.w.staged(k) {
			m, err := f.writeStagedLocked(ctx, k, p[n:], pos)
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		s, err := f.slotLocked(ctx, k)
		if err != nil {
			return n, err
		}
		lo := pos - plan.Start(k)
		hi := min(lo+int64(len(p)-n), plan.Size(k))
		if err := f.extendLocked(ctx, k, s, hi, lo); err != nil {
			return n, err
		}
		copy(s.buf[lo:hi], p[n:])
		s.valid = s.valid.add(lo, hi)
		f.tick++
		s.used = f.tick
		n += int(hi - lo)
		f.size = max(f.size, plan.Start(k)+hi)
	}
	return n, nil
}

// growLocked prepares the file to grow to end: a last part that was sent
// short cannot stay short once parts follow it.
func (f *File) growLocked(ctx context.Context, end int64) error {
	if end <= f.size || f.size == 0 {
		return nil
	}
	k := f.w.plan.Part(f.size - 1)
	if n, ok := f.sent[k]; ok && n < f.w.plan.Size(k) {
		return f.checkpointLocked(ctx)
	}
	return nil
}

// checkpointLocked makes the file durable and starts a new edit on top of it.
func (f *File) checkpointLocked(ctx context.Context) error {
	if _, err := f.syncLocked(ctx); err != nil {
		return err
	}
	f.editLocked()
	return nil
}

// slotLocked returns the open slot of part k, opening it if needed.
func (f *File) slotLocked(ctx context.Context, k int) (*slot, error) {
	if s := f.open[k]; s != nil {
		return s, nil
	}
	if err := f.makeRoomLocked(ctx, k); err != nil {
		return nil, err
	}
	s := &slot{}
	f.open[k] = s
	return s, nil
}

// makeRoomLocked prepares to open part k (a slot or a stage): it first sends
// this file's parts that are complete (a sequential writer has moved past
// them) and, when the file holds too many open parts, its least recently
// written one.
func (f *File) makeRoomLocked(ctx context.Context, k int) error {
	for j, s := range f.open {
		if int64(len(s.buf)) == f.w.plan.Size(j) && s.valid.covers(0, int64(len(s.buf))) {
			if err := f.sealLocked(ctx, j); err != nil {
				return err
			}
		}
	}
	for j, s := range f.staged {
		if f.stageFullLocked(j, s) {
			if err := f.finishLocked(ctx, j); err != nil {
				return err
			}
		}
	}
	if len(f.open)+len(f.staged) >= f.w.openSlots {
		if j := f.evictableLocked(k); j != 0 {
			return f.evictLocked(ctx, j)
		}
	}
	return nil
}

// evictableLocked picks the least recently written open or staged part
// other than except, and other than those being filled, that can be sent
// now: one the file covers to its full size. The last part of the file is
// never sent early, as it may still grow and a part sent short cannot be
// followed by others.
func (f *File) evictableLocked(except int) int {
	best, bestUsed := 0, uint64(0)
	consider := func(j int, used uint64) {
		if j == except || slices.Contains(f.busy, j) || f.w.plan.Start(j+1) > f.size {
			return
		}
		if best == 0 || used < bestUsed {
			best, bestUsed = j, used
		}
	}
	for j, s := range f.open {
		consider(j, s.used)
	}
	for j, s := range f.staged {
		consider(j, s.used)
	}
	return best
}

// evictLocked sends open or staged part j.
func (f *File) evictLocked(ctx context.Context, j int) error {
	if f.stateLocked(j) == partOpen {
		return f.sealLocked(ctx, j)
	}
	return f.finishLocked(ctx, j)
}

// extendLocked makes slot s of part k at least n bytes long; new bytes
// before zeroTo are zeros and not valid, and the caller overwrites the rest
// (a sequential writer's bytes are not zeroed first). Part 1's buffer starts small and doubles up to
// smallBuffer, so small files pay little; any other buffer, and part 1 past
// that, is paid for as a whole part at once. A file thus waits for memory at
// most once per part while holding a partly filled buffer, and files being
// written cannot starve one another.
func (f *File) extendLocked(ctx context.Context, k int, s *slot, n, zeroTo int64) error {
	if n <= int64(len(s.buf)) {
		return nil
	}
	if n > int64(cap(s.buf)) {
		target := f.w.plan.Size(k)
		size := target
		if k == 1 {
			size = max(int64(cap(s.buf))*2, firstBuffer)
			for size < n {
				size *= 2
			}
			if size > smallBuffer {
				size = target
			}
		}
		b, err := f.bufferLocked(ctx, min(size, target), k)
		if err != nil {
			return err
		}
		b = append(b, s.buf...)
		f.recycleLocked(s.buf)
		s.buf = b
	}
	old := int64(len(s.buf))
	s.buf = s.buf[:n]
	if zeroTo > old {
		clear(s.buf[old:min(zeroTo, n)])
	}
	return nil
}

// bufferLocked gets a buffer for part k. When memory is short it first sends
// this file's least recently written other part, so that a file never waits
// for memory that it holds itself.
func (f *File) bufferLocked(ctx context.Context, size int64, k int) ([]byte, error) {
	if b, ok := f.w.tryBuffer(size); ok {
		f.held += int64(cap(b))
		return b, nil
	}
	// Sending part j may itself need memory, and must then not send part
	// k, which is half filled here.
	f.busy = append(f.busy, k)
	defer func() { f.busy = f.busy[:len(f.busy)-1] }()
	if j := f.evictableLocked(k); j != 0 {
		if err := f.evictLocked(ctx, j); err != nil {
			return nil, err
		}
	}
	b, err := f.w.buffer(ctx, size)
	f.held += int64(cap(b))
	return b, err
}

// sealLocked sends open part k: the bytes not written are filled from the
// base (a ranged GET of at most one part) or are zeros past it.
func (f *File) sealLocked(ctx context.Context, k int) error {
	s := f.open[k]
	start := f.w.plan.Start(k)
	length := min(f.w.plan.Size(k), f.size-start)
	if length <= 0 {
		f.recycleLocked(s.buf)
		delete(f.open, k)
		return nil
	}
	if err := f.completeSlotLocked(ctx, k, s, length); err != nil {
		return err
	}
	if err := f.startLocked(ctx); err != nil {
		return err
	}
	f.up.sendPart(k, f.handOverLocked(s.buf[:length]))
	f.sent[k] = length
	delete(f.open, k)
	return nil
}

// completeSlotLocked fills slot s of part k up to length with the file's bytes.
func (f *File) completeSlotLocked(ctx context.Context, k int, s *slot, length int64) error {
	if err := f.extendLocked(ctx, k, s, length, length); err != nil {
		return err
	}
	start := f.w.plan.Start(k)
	var err error
	s.valid.gaps(0, length, func(lo, hi int64) {
		if err == nil {
			err = f.readPlainLocked(ctx, s.buf[lo:hi], start+lo)
		}
	})
	if err != nil {
		return err
	}
	s.valid = s.valid.add(0, length)
	return nil
}

func (f *File) startLocked(ctx context.Context) error {
	if f.up != nil {
		return nil
	}
	up, err := f.w.startUpload(ctx, f.key, f.putOptionsLocked())
	if err != nil && f.conflictLocked(ctx, err) {
		up, err = f.w.startUpload(ctx, f.key, f.putOptionsLocked())
	}
	if err != nil {
		return err
	}
	f.up = up
	return nil
}

// readPlainLocked reads bytes that are in no open part: the base's below
// baseLimit, zeros above.
func (f *File) readPlainLocked(ctx context.Context, p []byte, off int64) error {
	inBase := max(min(int64(len(p)), f.baseLimit-off), 0)
	clear(p[inBase:])
	if inBase == 0 {
		return nil
	}
	return f.readBase(ctx, p[:inBase], off)
}

// readBase fills p from the base object at off, pinned to its ETag.
func (f *File) readBase(ctx context.Context, p []byte, off int64) error {
	if _, err := store.ReadAt(ctx, f.w.st, f.base.Key, f.base.ETag, p, off); err != nil {
		return fmt.Errorf("read %q at %d: %w", f.key, off, err)
	}
	return nil
}
