package fs

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

var _ = (fusefs.NodeGetattrer)((*fileNode)(nil))

// Getattr reports the state's size for a file being written. Otherwise the
// object is asked for again once the attribute timeout has passed, so that
// stat sees objects replaced by other clients; fstat on an open descriptor
// answers from what the open found.
func (n *fileNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	refresh := f == nil && n.state == nil && time.Since(n.statAt) >= n.fsys.opts.AttrTimeout
	key := n.key
	n.mu.Unlock()
	if refresh {
		obj, err := n.fsys.stat(ctx, key)
		if err != nil {
			return n.fsys.toErrno("getattr", key, err)
		}
		n.setObject(obj)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attrs.fill(&out.Attr, syscall.S_IFREG, n.sizeLocked())
	return 0
}

var _ = (fusefs.NodeSetattrer)((*fileNode)(nil))

// Setattr truncates through the state and stores mode, owner and mtime
// changes; see setAttrs.
func (n *fileNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	if size, ok := in.GetSize(); ok {
		if size > uint64(store.MaxObjectSize) {
			return syscall.EFBIG
		}
		// ftruncate on a descriptor whose close will sync leaves the sync
		// to that close; truncate(2) by path has nobody to do it after.
		h, _ := f.(*fileHandle)
		syncNow := h == nil || !h.syncs
		if err := n.truncate(ctx, int64(size), syncNow); err != nil {
			return n.fsys.toErrno("truncate", n.keyNow(), err)
		}
	}
	if errno := n.setAttrs(ctx, in); errno != 0 {
		return errno
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attrs.fill(&out.Attr, syscall.S_IFREG, n.sizeLocked())
	return 0
}

// setAttrs applies the mode, owner and mtime changes of in. A file whose
// state is dirty writes them with its next upload (writeback.File's
// SetOptions at sync). A stored object gets them at once, by a
// metadata-replacing copy onto itself pinned to its ETag; a state that is
// not dirty is then re-opened on the copied object, whose ETag may differ.
// An unlinked file keeps them in memory.
func (n *fileNode) setAttrs(ctx context.Context, in *fuse.SetAttrIn) syscall.Errno {
	n.op.Lock()
	defer n.op.Unlock()
	n.mu.Lock()
	a := n.attrs.setattr(in)
	if a == n.attrs {
		n.mu.Unlock()
		return 0
	}
	if n.unlinked || !n.exists || (n.state != nil && n.state.Dirty()) {
		n.attrs, n.localAttrs = a, true
		n.mu.Unlock()
		return 0
	}
	obj, key := n.obj, n.key
	n.mu.Unlock()

	md := func(base store.Metadata) store.Metadata { return a.metadata(base, syscall.S_IFREG) }
	stored, err := n.fsys.setMetadata(context.WithoutCancel(ctx), obj, md, contentType(key))
	if err != nil {
		return n.fsys.toErrno("setattr", key, err)
	}
	n.mu.Lock()
	n.attrs, n.localAttrs = a, false
	n.obj, n.statAt = stored, time.Now()
	old := n.state
	if old != nil {
		n.state = n.fsys.opts.Writer.Open(key, &stored, n.putOptionsLocked())
		n.keepETag = ""
	}
	n.mu.Unlock()
	if old != nil {
		old.Discard(context.Background())
	}
	return 0
}

var _ = (fusefs.NodeOpener)((*fileNode)(nil))

// Open asks S3 for the object again unless the file has a state (close-to-
// open consistency). Opening for writing or with O_TRUNC gives the file a
// state, or shares the one it has.
func (n *fileNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0
	if (writable || trunc) && n.fsys.opts.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	n.op.RLock()
	defer n.op.RUnlock()
	if !n.hasState() {
		key := n.keyNow()
		obj, err := n.fsys.stat(ctx, key)
		if err != nil {
			return nil, 0, n.fsys.toErrno("open", key, err)
		}
		n.setObject(obj)
	}

	n.mu.Lock()
	var fuseFlags uint32
	var truncate bool
	switch {
	case n.state == nil && (writable || trunc):
		var base *store.Object
		if !trunc {
			obj := n.obj
			base = &obj
		}
		n.startStateLocked(base)
	case n.state != nil:
		truncate = trunc
	case n.keepETag == n.obj.ETag:
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	default:
		n.keepETag = n.obj.ETag
	}
	n.users++
	st := n.state
	n.mu.Unlock()

	if truncate {
		if err := st.Truncate(ctx, 0); err != nil {
			n.releaseHeld()
			return nil, 0, n.fsys.toErrno("open", n.keyNow(), err)
		}
	}
	return &fileHandle{n: n, syncs: writable || trunc}, fuseFlags, 0
}

// fileHandle is one open file description.
type fileHandle struct {
	n *fileNode
	// syncs: closing this handle makes the file durable (it was opened for
	// writing, with O_TRUNC, or created).
	syncs bool
}

var _ = (fusefs.FileReader)((*fileHandle)(nil))

// Read serves the application's own writes from the state when there is one,
// and the stored object through the block cache otherwise.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.op.RLock()
	defer n.op.RUnlock()
	n.mu.Lock()
	st, obj := n.state, n.obj
	n.mu.Unlock()

	var got int
	var err error
	if st != nil {
		if stored, ok := st.Stored(); ok {
			st, obj = nil, stored // no changes: read through the cache
		}
	}
	switch {
	case st != nil:
		got, err = st.ReadAt(ctx, dest, off)
	case n.fsys.opts.Cache != nil:
		got, err = n.fsys.opts.Cache.ReadAt(ctx, obj, dest, off)
	default:
		got, err = readStore(ctx, n.fsys.opts.Store, obj, dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, n.fsys.toErrno("read", obj.Key, err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// readStore reads without a cache: one ranged GET pinned to the ETag.
func readStore(ctx context.Context, st store.Store, obj store.Object, dest []byte, off int64) (int, error) {
	if off >= obj.Size {
		return 0, io.EOF
	}
	length := min(int64(len(dest)), obj.Size-off)
	rc, err := st.Get(ctx, obj.Key, off, length, obj.ETag)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	got, err := io.ReadFull(rc, dest[:length])
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
	n.attrs.mtime = time.Now().Truncate(time.Second)
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
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.syncs {
		return 0
	}
	if err := h.n.sync(context.WithoutCancel(ctx)); err != nil {
		return h.n.fsys.toErrno("close", h.n.keyNow(), err)
	}
	return 0
}

var _ = (fusefs.FileFsyncer)((*fileHandle)(nil))

func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if err := h.n.sync(context.WithoutCancel(ctx)); err != nil {
		return h.n.fsys.toErrno("fsync", h.n.keyNow(), err)
	}
	return 0
}

var _ = (fusefs.FileReleaser)((*fileHandle)(nil))

// Release's result is ignored by the kernel; see fileNode.release.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.n.release()
	return 0
}
