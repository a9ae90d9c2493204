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

// Symbolic links are stored as s3fs stores them, so that either reads the
// other's: an object whose body is the target path and whose "mode" metadata
// carries the type S_IFLNK (s3fs writes S_IFLNK|0777, "41471"), with the
// usual uid, gid and mtime, and Content-Type application/octet-stream.

// maxLinkLen is Linux's PATH_MAX: no target is longer, so a body beyond it
// cannot be a link target.
const maxLinkLen = 4096

const symlinkContentType = "application/octet-stream"

// isSymlink reports whether an object's metadata marks it as a link.
func isSymlink(md store.Metadata) bool {
	mode, err := strconv.ParseUint(md[metaMode], 10, 32)
	return err == nil && mode&syscall.S_IFMT == syscall.S_IFLNK
}

// symlinkNode is a symbolic link: one object holding the target.
type symlinkNode struct {
	fusefs.Inode
	metaObject
	// target is the link's target as read from obj, "" until read.
	// guarded by mu
	target string
}

func newSymlinkNode(fsys *filesystem, key string) *symlinkNode {
	return &symlinkNode{metaObject: metaObject{fsys: fsys, typ: syscall.S_IFLNK, key: key}}
}

func (l *symlinkNode) setObject(obj store.Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if newVersion, ok := l.setObjectLocked(obj); ok && newVersion {
		l.target = ""
	}
}

// symlinkChild returns the inode for the link object obj found under name.
func (d *dirNode) symlinkChild(ctx context.Context, name string, obj store.Object, out *fuse.EntryOut) *fusefs.Inode {
	if ch := d.GetChild(name); ch != nil {
		if l, ok := ch.Operations().(*symlinkNode); ok {
			l.setObject(obj)
			l.fill(&out.Attr)
			return ch
		}
	}
	l := newSymlinkNode(d.fsys, obj.Key)
	l.setObject(obj)
	l.fill(&out.Attr)
	return d.NewInode(ctx, l, fusefs.StableAttr{Mode: syscall.S_IFLNK})
}

// objectType is the type a listing reports for the object name: S3 listings
// carry no metadata, so an object is a regular file unless this mount has
// seen it to be a link or a special file. lstat (a LOOKUP) is always right.
func (d *dirNode) objectType(name string) uint32 {
	if ch := d.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *symlinkNode:
			return syscall.S_IFLNK
		case *specialNode:
			return n.typ
		}
	}
	return syscall.S_IFREG
}

var _ = (fusefs.NodeSymlinker)((*dirNode)(nil))

// Symlink stores the link as one PutObject of the target.
func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.readOnly() {
		return nil, syscall.EROFS
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return nil, errno
	}
	if len(target) >= maxLinkLen {
		return nil, syscall.ENAMETOOLONG
	}
	a := d.childAttrs(ctx, 0o777, false)
	opts := store.PutOptions{Metadata: a.metadata(nil, syscall.S_IFLNK), ContentType: symlinkContentType}
	opts.Cond = d.fsys.newNameCond()
	body := []byte(target)
	if err := d.fsys.awaitDelete(ctx, key); err != nil {
		return nil, d.fsys.toErrno("symlink", key, err)
	}
	obj, err := d.fsys.opts.Store.Put(context.WithoutCancel(ctx), key, body, store.Sum(body), opts)
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			return nil, syscall.EEXIST // another client made the name meanwhile
		}
		return nil, d.fsys.toErrno("symlink", key, err)
	}
	d.fsys.changed(key)
	d.entriesChanged()
	obj.Key, obj.Size, obj.Metadata = key, int64(len(body)), opts.Metadata
	l := newSymlinkNode(d.fsys, key)
	l.setObject(obj)
	l.target = target
	l.fill(&out.Attr)
	return d.NewInode(ctx, l, fusefs.StableAttr{Mode: syscall.S_IFLNK}), 0
}

var _ = (fusefs.NodeReadlinker)((*symlinkNode)(nil))

// Readlink returns the object's body, read once per version.
func (l *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	l.mu.Lock()
	obj, target := l.obj, l.target
	l.mu.Unlock()
	if target != "" {
		return []byte(target), 0
	}
	if obj.Size >= maxLinkLen {
		return nil, syscall.ENAMETOOLONG
	}
	body := make([]byte, obj.Size)
	if _, err := store.ReadAt(ctx, l.fsys.opts.Store, obj.Key, obj.ETag, body, 0); err != nil {
		return nil, l.fsys.toErrno("readlink", obj.Key, err)
	}
	l.mu.Lock()
	if l.obj.ETag == obj.ETag {
		l.target = string(body)
	}
	l.mu.Unlock()
	return body, 0
}

var _ = (fusefs.NodeGetattrer)((*symlinkNode)(nil))

// Getattr asks S3 again once the attribute timeout has passed, as for files.
func (l *symlinkNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return l.getattr(ctx, l.setObject, out)
}

var _ = (fusefs.NodeSetattrer)((*symlinkNode)(nil))

// Setattr stores owner and mtime changes (lchown, and utimensat with
// AT_SYMLINK_NOFOLLOW, which rsync -a and cp -a use) by a metadata-replacing
// copy of the link onto itself. A link's mode cannot change on Linux.
func (l *symlinkNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if l.fsys.opts.ReadOnly {
		return syscall.EROFS
	}
	if _, ok := in.GetSize(); ok {
		return syscall.EINVAL
	}
	l.mu.Lock()
	a := l.attrs.setattr(in)
	a.perm = 0o777
	obj := l.obj
	changed := a != l.attrs
	l.mu.Unlock()
	if changed {
		md := func(base store.Metadata) store.Metadata { return a.metadata(base, syscall.S_IFLNK) }
		stored, _, err := l.fsys.setMetadata(context.WithoutCancel(ctx), obj, md, symlinkContentType)
		if err != nil {
			return l.fsys.toErrno("setattr", obj.Key, err)
		}
		l.setObject(stored)
	}
	l.fill(&out.Attr)
	return 0
}

var _ = (fusefs.NodeLinker)((*dirNode)(nil))

// Link refuses hard links: an object has exactly one key, and a copy would
// not share later changes as a link must. EPERM is what link(2) answers on
// file systems without hard links; cp -a and rsync -H then copy instead.
func (d *dirNode) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d.fsys.linkWarn.Do(func() {
		d.fsys.log.Warn("hard links are not supported on S3; link(2) answers EPERM (logged once per mount)", "name", name)
	})
	return nil, syscall.EPERM
}
