package fs

import (
	"context"
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
	n.fillLocked(&out.Attr)
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
	n.fillLocked(&out.Attr)
	return 0
}

// setAttrs applies the mode, owner and time changes of in to the file's
// attributes. A file whose state holds changes writes them with its next
// upload (writeback.File's SetOptions at sync). For a stored object they are
// pending: written by a rename's copy, by the next upload, by fsync of the
// file or a directory above it, at unmount, or else after
// Options.MetadataDelay by a copy of their own (writeMetaHeld). Several
// changes in a row thus cost at most one copy. An unlinked file keeps them
// in memory.
func (n *fileNode) setAttrs(ctx context.Context, in *fuse.SetAttrIn) syscall.Errno {
	n.op.Lock()
	defer n.op.Unlock()
	n.mu.Lock()
	a := n.attrs.setattr(in)
	if a == n.attrs {
		n.mu.Unlock()
		return 0
	}
	n.attrs, n.localAttrs = a, true
	dirty := n.state != nil && n.state.Dirty()
	if dirty {
		n.setWhileDirty = true
	}
	pend := !n.metaPending && n.exists && !n.unlinked && !dirty
	if pend {
		n.metaPending = true
	}
	n.mu.Unlock()
	if pend {
		n.fsys.metaPendingAdd(n)
	}
	return 0
}

var _ = (fusefs.NodeOpener)((*fileNode)(nil))

// Open asks for the object again unless the file has a state (close-to-open
// consistency, through the metadata cache). Opening for writing or with
// O_TRUNC gives the file a state, or shares the one it has. A handle of a
// file without a state reads the version found here until it is released.
//
// The kernel's page cache of the file is kept (FOPEN_KEEP_CACHE) while the
// version is the one whose bytes it holds. A new version is opened without
// it, so the kernel drops its pages, unless descriptors still read the
// older version through them: the new handle then bypasses the page cache
// (FOPEN_DIRECT_IO) until they are closed, so that the page cache never
// holds bytes of two versions, which one read(2) could mix.
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
		stat := n.fsys.stat
		if writable && !trunc {
			// The object becomes the base of the edits: it must be current.
			stat = n.fsys.statFresh
		}
		obj, err := stat(ctx, key)
		if err != nil {
			return nil, 0, n.fsys.toErrno("open", key, err)
		}
		n.setObject(obj)
	}

	n.mu.Lock()
	h := &fileHandle{n: n, syncs: writable || trunc}
	var fuseFlags uint32
	var truncate bool
	switch {
	case n.state == nil && (writable || trunc):
		var base *store.Object
		if !trunc {
			obj := n.obj
			base = &obj
		}
		if trunc {
			// O_TRUNC of an existing file is a change of its contents,
			// even of an empty one (POSIX open).
			n.attrs.modified()
		}
		n.startStateLocked(base)
	case n.state != nil:
		truncate = trunc
		if trunc {
			n.attrs.modified()
		}
	case n.ver != nil && n.ver == n.pageVer:
		fuseFlags = fuse.FOPEN_KEEP_CACHE
	case n.pageOpen > 0:
		fuseFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE
		h.direct = true
	default:
		n.pageVer = n.ver
	}
	h.ver = n.ver
	n.users++
	if !h.direct {
		n.pageOpen++
	}
	st := n.state
	n.mu.Unlock()

	if truncate {
		if err := st.Truncate(ctx, 0); err != nil {
			h.releaseHeld()
			return nil, 0, n.fsys.toErrno("open", n.keyNow(), err)
		}
	}
	return h, fuseFlags, 0
}
