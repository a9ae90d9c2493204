package fs

import (
	"context"
	"errors"
	"strconv"
	"syscall"

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
	metaObject
}

var _ objectNode = (*specialNode)(nil)

func newSpecialNode(fsys *filesystem, typ uint32, key string) *specialNode {
	return &specialNode{metaObject: metaObject{fsys: fsys, typ: typ, key: key}}
}

func (s *specialNode) setObject(obj store.Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setObjectLocked(obj)
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
	s := newSpecialNode(d.fsys, typ, obj.Key)
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
	opts.Cond = d.fsys.newNameCond()
	if err := d.fsys.awaitDelete(ctx, key); err != nil {
		return nil, d.fsys.toErrno("mknod", key, err)
	}
	obj, err := d.fsys.opts.Store.Put(context.WithoutCancel(ctx), key, nil, store.Sum(nil), opts)
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			return nil, syscall.EEXIST // another client made the name meanwhile
		}
		return nil, d.fsys.toErrno("mknod", key, err)
	}
	d.fsys.changed(key)
	d.entriesChanged()
	obj.Key, obj.Size, obj.Metadata = key, 0, opts.Metadata
	s := newSpecialNode(d.fsys, typ, key)
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
	return s.getattr(ctx, s.setObject, out)
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
