package fs

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

// FIFOs, sockets and device nodes are stored as s3fs stores them, so that
// either reads the other's: an empty object whose "mode" metadata carries
// the file type (S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK) with the permission
// bits, and, for a device node, whose "rdev" metadata carries the device
// number. The kernel serves opens of such nodes itself (a FIFO's pipe, a
// device's driver, a socket's connect), so partfs only keeps their name and
// attributes.

const specialContentType = "application/octet-stream"

// specialType returns the file type an object's metadata gives it when it
// is a FIFO, socket or device node, and 0 otherwise.
func specialType(md store.Metadata) uint32 {
	mode, err := strconv.ParseUint(md[metaMode], 10, 32)
	if err != nil {
		return 0
	}
	switch typ := uint32(mode) & syscall.S_IFMT; typ {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
		return typ
	}
	return 0
}

// specialNode is a FIFO, socket or device node: one empty object.
type specialNode struct {
	fusefs.Inode
	fsys *filesystem
	typ  uint32 // S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK; fixed at creation

	mu     sync.Mutex
	key    string       // changes on rename; guarded by mu
	obj    store.Object // the stored object as last seen; guarded by mu
	statAt time.Time    // when obj was last confirmed; guarded by mu
	attrs  attrs        // guarded by mu
}

var _ objectNode = (*specialNode)(nil)

func (s *specialNode) keyNow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

func (s *specialNode) setObject(obj store.Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if obj.Key != s.key {
		return
	}
	s.obj, s.statAt = obj, time.Now()
	s.attrs = defaultFileAttrs(s.fsys, obj.LastModified).withMetadata(obj.Metadata).since(s.attrs)
}

// moved re-points the node at key after a rename copied it there as obj.
func (s *specialNode) moved(key string, obj store.Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = key
	if obj.ETag == "" {
		s.obj.Key, s.statAt = key, time.Time{}
		return
	}
	if obj.Metadata == nil {
		obj.Metadata = s.obj.Metadata
	}
	s.obj, s.statAt = obj, time.Now()
	s.attrs.ctime = now()
}

func (s *specialNode) fill(out *fuse.Attr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attrs.fill(out, s.typ, 0)
}

// specialChild returns the inode for the special file obj of type typ
// found under name.
func (d *dirNode) specialChild(ctx context.Context, name string, typ uint32, obj store.Object, out *fuse.EntryOut) *fusefs.Inode {
	if ch := d.GetChild(name); ch != nil {
		if s, ok := ch.Operations().(*specialNode); ok && s.typ == typ {
			s.setObject(obj)
			s.fill(&out.Attr)
			return ch
		}
	}
	s := &specialNode{fsys: d.fsys, typ: typ, key: obj.Key}
	s.setObject(obj)
	s.fill(&out.Attr)
	return d.NewInode(ctx, s, fusefs.StableAttr{Mode: typ})
}

var _ = (fusefs.NodeMknoder)((*dirNode)(nil))

// Mknod stores a FIFO, socket or device node as one empty PutObject.
// Regular files come through Create; other types are refused.
func (d *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.readOnly() {
		return nil, syscall.EROFS
	}
	typ := mode & syscall.S_IFMT
	switch typ {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	default:
		return nil, syscall.EINVAL
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return nil, errno
	}
	a := d.childAttrs(ctx, mode, false)
	if typ == syscall.S_IFCHR || typ == syscall.S_IFBLK {
		a.rdev = dev
	}
	opts := store.PutOptions{Metadata: a.metadata(nil, typ), ContentType: specialContentType}
	obj, err := d.fsys.opts.Store.Put(context.WithoutCancel(ctx), key, nil, store.Sum(nil), opts)
	if err != nil {
		return nil, d.fsys.toErrno("mknod", key, err)
	}
	d.fsys.changed(key)
	d.entriesChanged()
	obj.Key, obj.Size, obj.Metadata = key, 0, opts.Metadata
	s := &specialNode{fsys: d.fsys, typ: typ, key: key}
	s.setObject(obj)
	s.mu.Lock()
	s.attrs = a // the times as created, not as LastModified rounds them
	s.mu.Unlock()
	s.fill(&out.Attr)
	return d.NewInode(ctx, s, fusefs.StableAttr{Mode: typ}), 0
}

var _ = (fusefs.NodeGetattrer)((*specialNode)(nil))

// Getattr asks S3 again once the attribute timeout has passed, as for files.
func (s *specialNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.mu.Lock()
	refresh := time.Since(s.statAt) >= s.fsys.opts.AttrTimeout
	key := s.key
	s.mu.Unlock()
	if refresh {
		obj, err := s.fsys.stat(ctx, key)
		if err != nil {
			return s.fsys.toErrno("getattr", key, err)
		}
		s.setObject(obj)
	}
	s.fill(&out.Attr)
	return 0
}

var _ = (fusefs.NodeSetattrer)((*specialNode)(nil))

// Setattr stores mode, owner and time changes by a metadata-replacing copy
// of the empty object onto itself. A size change of a FIFO or socket is
// refused by the kernel before it gets here; that of a device node goes to
// the device.
func (s *specialNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if s.fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	s.mu.Lock()
	a := s.attrs.setattr(in)
	obj := s.obj
	changed := a != s.attrs
	s.mu.Unlock()
	if changed {
		md := func(base store.Metadata) store.Metadata { return a.metadata(base, s.typ) }
		stored, _, err := s.fsys.setMetadata(context.WithoutCancel(ctx), obj, md, specialContentType)
		if err != nil {
			return s.fsys.toErrno("setattr", obj.Key, err)
		}
		s.setObject(stored)
		s.mu.Lock()
		s.attrs = a
		s.mu.Unlock()
	}
	s.fill(&out.Attr)
	return 0
}
