package fs

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/cache"
	"github.com/partfs/partfs/store"
)

// fileHandle is one open file description.
type fileHandle struct {
	n *fileNode
	// syncs: closing this handle makes the file durable (it was opened for
	// writing, with O_TRUNC, or created).
	syncs bool
	// direct: opened with FOPEN_DIRECT_IO, around the page cache (see Open).
	direct bool
	// ver is the version the handle reads while the file has no state; nil
	// for a file created by this handle. Set at open; ver.obj is guarded by
	// n.mu.
	ver *fileVersion

	mu     sync.Mutex
	reader *handleReader // guarded by mu; reads the version last read
	closed bool          // guarded by mu
}

// handleReader is the block cache's Reader of one version for one handle.
// A handle switches readers when the version it reads changes (the file's
// state was synced, the object renamed); one still in use by a read is
// closed when that read ends.
type handleReader struct {
	r    *cache.Reader
	refs int // guarded by fileHandle.mu; reads using r
}

var _ = (fusefs.FileReader)((*fileHandle)(nil))

// Read serves the application's own writes from the state when it holds
// changes, and otherwise the stored version through the block cache: the
// state's stored object for a file being written, else the version found
// at open. The reply hands the cached blocks to the kernel without a copy
// (spanResult).
//
// A read that finds its version replaced or deleted in S3 (the block cache's
// GET is pinned to the ETag) fails with ESTALE, and the file is asked for
// again so that stat and the next open see what S3 holds now. ESTALE ("stale
// file handle") says exactly that: this descriptor's file is gone, open it
// again; EIO would read as a device failure. The handle keeps its version,
// so it never returns bytes of another one; blocks still cached are served.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.op.RLock()
	defer n.op.RUnlock()
	n.mu.Lock()
	st := n.state
	var obj store.Object
	ok := h.ver != nil
	if ok {
		obj = h.ver.obj
	}
	n.mu.Unlock()

	if st != nil {
		stored, clean := st.Stored()
		if !clean {
			got, err := st.ReadAt(ctx, dest, off)
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, n.fsys.toErrno("read", st.Key(), err)
			}
			return fuse.ReadResultData(dest[:got]), 0
		}
		obj, ok = stored, true
	}
	if !ok {
		return fuse.ReadResultData(nil), 0 // nothing stored and no state: empty
	}
	res, err := h.readObject(ctx, obj, dest, off)
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			n.versionGone(ctx, obj)
		}
		return nil, n.fsys.toErrno("read", obj.Key, err)
	}
	return res, 0
}

// readObject reads len(dest) bytes of obj at off, through the block cache
// when there is one.
func (h *fileHandle) readObject(ctx context.Context, obj store.Object, dest []byte, off int64) (fuse.ReadResult, error) {
	fsys := h.n.fsys
	if fsys.opts.Cache == nil {
		got, err := readStore(ctx, fsys.opts.Store, obj, dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return fuse.ReadResultData(dest[:got]), nil
	}
	hr := h.acquire(obj)
	defer h.letGo(hr)
	sp, err := hr.r.Span(ctx, off, len(dest))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return spanResult{sp}, nil
}

// spanResult is a READ reply made of cached blocks: go-fuse writes them to
// the kernel with writev, without copying them (Slices), and calls Done
// once the kernel has them, which hands the blocks back to the cache for
// reuse. go-fuse calls Done for every reply it writes or drops with an
// error; a reply it never writes (an empty one, or one for a connection
// already gone) only keeps its blocks from being reused.
type spanResult struct{ sp *cache.Span }

var _ = (fuse.ReadResult)(spanResult{})

func (r spanResult) Size() int { return r.sp.Len() }

// Slices is what go-fuse's writev path asks for.
func (r spanResult) Slices() ([][]byte, fuse.Status) { return r.sp.Slices(), fuse.OK }

// Bytes is the copying path of go-fuse, where writev is not used.
func (r spanResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, v := range r.sp.Slices() {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

func (r spanResult) Done() { r.sp.Release() }

// acquire returns the handle's reader of obj, opening it (and retiring the
// reader of another version) when needed. The caller hands it to letGo.
func (h *fileHandle) acquire(obj store.Object) *handleReader {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.reader
	if cur == nil || !sameObject(cur.r.Object(), obj) {
		if cur != nil && cur.refs == 0 {
			cur.r.Close()
		}
		cur = &handleReader{r: h.n.fsys.opts.Cache.Open(obj)}
		h.reader = cur
	}
	cur.refs++
	return cur
}

// letGo ends a read's use of hr, closing it if it was retired meanwhile.
func (h *fileHandle) letGo(hr *handleReader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hr.refs--
	if hr.refs == 0 && (hr != h.reader || h.closed) {
		hr.r.Close()
	}
}

// sameObject reports whether a and b name the same bytes at the same key.
func sameObject(a, b store.Object) bool {
	return a.Key == b.Key && a.ETag == b.ETag && a.Size == b.Size
}

// versionGone handles a read that found obj changed in S3: what the
// metadata cache knows of its key is dropped and the object is asked for
// again, so that the file's attributes, and the next open, show the object
// S3 holds now.
func (n *fileNode) versionGone(ctx context.Context, obj store.Object) {
	if fresh, err := n.fsys.statFresh(ctx, obj.Key); err == nil {
		n.setObject(fresh)
	}
}

// readStore reads without a cache: one ranged GET pinned to the ETag.
func readStore(ctx context.Context, st store.Store, obj store.Object, dest []byte, off int64) (int, error) {
	if off >= obj.Size {
		return 0, io.EOF
	}
	length := min(int64(len(dest)), obj.Size-off)
	got, err := store.ReadAt(ctx, st, obj.Key, obj.ETag, dest[:length], off)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF // the object is shorter than its size said
	}
	return got, err
}

var _ = (fusefs.FileWriter)((*fileHandle)(nil))

// Write goes to the state with the request's context: an interrupt cancels
// a wait for write-buffer memory.
func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n := h.n
	n.op.RLock()
	defer n.op.RUnlock()
	n.mu.Lock()
	st := n.state
	n.attrs.modified()
	n.mu.Unlock()
	if st == nil {
		return 0, syscall.EBADF
	}
	written, err := st.WriteAt(ctx, data, off)
	if err != nil {
		return 0, n.fsys.toErrno("write", st.Key(), err)
	}
	return uint32(written), 0
}

var _ = (fusefs.FileFlusher)((*fileHandle)(nil))

// Flush runs on every close(2) of a descriptor. It is where a failed upload
// reaches the application, so it syncs and returns the error.
//
// One case waits for Release instead: a truncating open of a stored
// object with nothing written yet. Shells open `cmd > file` with O_TRUNC,
// duplicate the descriptor and close the original before cmd writes a
// byte; storing then would replace the object with an empty one while the
// new contents are still to come, and a crash would leave it empty.
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.syncs || h.n.emptyReplacement() {
		return 0
	}
	if h.n.fsys.opts.FastClose {
		// The bytes are held in the write buffer; the upload runs in the
		// background, and its failure is reported by the next close or
		// fsync (see "Fast close" in the package comment).
		if err := h.n.takeUploadErr(); err != nil {
			return h.n.fsys.toErrno("close", h.n.keyNow(), err)
		}
		h.n.queueUpload()
		return 0
	}
	ctx, cancel := h.n.fsys.replyContext(ctx)
	defer cancel()
	if err := h.n.sync(ctx); err != nil {
		return h.n.fsys.toErrno("close", h.n.keyNow(), err)
	}
	return 0
}

var _ = (fusefs.FileFsyncer)((*fileHandle)(nil))

func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if err := h.n.takeUploadErr(); err != nil {
		return h.n.fsys.toErrno("fsync", h.n.keyNow(), err)
	}
	ctx, cancel := h.n.fsys.replyContext(ctx)
	defer cancel()
	if err := h.n.sync(ctx); err != nil {
		return h.n.fsys.toErrno("fsync", h.n.keyNow(), err)
	}
	return 0
}

// replyContext is the context of a close or fsync: an interrupt does not
// stop the upload (the application would lose the error), but
// Options.ReplyLimit does.
func (fsys *filesystem) replyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithoutCancel(ctx)
	if fsys.opts.ReplyLimit > 0 {
		return context.WithTimeout(ctx, fsys.opts.ReplyLimit)
	}
	return ctx, func() {}
}

var _ = (fusefs.FileReleaser)((*fileHandle)(nil))

// Release's result is ignored by the kernel; see fileNode.releaseHeld. The
// kernel sends it once no read of the handle is in flight.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	h.closed = true
	if hr := h.reader; hr != nil && hr.refs == 0 {
		hr.r.Close()
	}
	h.mu.Unlock()
	n := h.n
	n.op.RLock()
	defer n.op.RUnlock()
	h.releaseHeld()
	return 0
}

// releaseHeld ends the handle's use of the file. The caller holds n.op
// shared.
func (h *fileHandle) releaseHeld() {
	n := h.n
	if !h.direct {
		n.mu.Lock()
		n.pageOpen--
		n.mu.Unlock()
	}
	n.releaseHeld()
}
