package fs

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/partfs/partfs/store"
)

// renameNoReplace is RENAME_NOREPLACE of renameat2(2) (<linux/fs.h>).
const renameNoReplace = 0x1

var _ = (fusefs.NodeRenamer)((*dirNode)(nil))

// Rename moves name to newName in newParent by copying and deleting; see
// "Rename" in the package comment. When it returns success go-fuse moves the
// inode in its tree (MvChild, replacing a target), so open descriptors and
// the kernel's dentries follow the file.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	errno := d.rename(ctx, name, newParent, newName, flags)
	if errno == 0 {
		d.entriesChanged()
		if dst := asDir(newParent); dst != nil {
			dst.entriesChanged()
		}
	}
	return errno
}

func (d *dirNode) rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if d.readOnly() {
		return syscall.EROFS
	}
	if flags&^renameNoReplace != 0 {
		// RENAME_EXCHANGE cannot be made of copies without a moment in
		// which both names hold the same file; RENAME_WHITEOUT is for
		// overlay file systems. EINVAL is rename(2)'s "flag not supported".
		return syscall.EINVAL
	}
	dst := asDir(newParent)
	if dst == nil {
		return syscall.EXDEV
	}
	srcKey, errno := d.childKey(name)
	if errno != 0 {
		return errno
	}
	dstKey, errno := dst.childKey(newName)
	if errno != 0 {
		return errno
	}
	// A rename that S3 has carried out must not be reported as failed
	// because of a late interrupt; see "Interrupts".
	ctx = context.WithoutCancel(ctx)
	noReplace := flags&renameNoReplace != 0

	var node fusefs.InodeEmbedder
	if ch := d.GetChild(name); ch != nil {
		node = ch.Operations()
	}
	switch n := node.(type) {
	case *dirNode:
		if len(dstKey)+1 > maxKeyLen {
			return syscall.ENAMETOOLONG
		}
		return d.renameDir(ctx, n, srcKey+"/", dst, newName, dstKey+"/", noReplace)
	case objectNode:
		return d.renameObject(ctx, n, srcKey, dst, newName, dstKey, noReplace)
	}
	// The kernel looks the name up before renaming it, so the tree knows
	// it; should it not, S3 is asked, files first as in Lookup.
	_, err := d.fsys.stat(ctx, srcKey)
	if err == nil {
		return d.renameObject(ctx, nil, srcKey, dst, newName, dstKey, noReplace)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return d.fsys.toErrno("rename", srcKey, err)
	}
	_, found, err := d.findDir(ctx, srcKey+"/")
	if err != nil {
		return d.fsys.toErrno("rename", srcKey+"/", err)
	}
	if !found {
		return syscall.ENOENT
	}
	if len(dstKey)+1 > maxKeyLen {
		return syscall.ENAMETOOLONG
	}
	return d.renameDir(ctx, nil, srcKey+"/", dst, newName, dstKey+"/", noReplace)
}

// asDir returns the directory node behind a go-fuse parent.
func asDir(p fusefs.InodeEmbedder) *dirNode {
	switch p := p.(type) {
	case *dirNode:
		return p
	case *Root:
		return &p.dirNode
	}
	return nil
}

// renameObject moves a file or link: the node n (nil when the tree has
// none) at srcKey to dstKey, replacing what dstKey holds.
func (d *dirNode) renameObject(ctx context.Context, n objectNode, srcKey string, dst *dirNode, newName, dstKey string, noReplace bool) syscall.Errno {
	if noReplace {
		exists, err := d.fsys.nameExists(ctx, dstKey)
		if err != nil {
			return d.fsys.toErrno("rename", dstKey, err)
		}
		if exists {
			return syscall.EEXIST
		}
	}
	// Neither the file that moves nor a file it replaces may write or sync
	// meanwhile: a late upload of either would land on the wrong key.
	f, _ := n.(*fileNode)
	var target *fileNode
	if ch := dst.GetChild(newName); ch != nil {
		target, _ = ch.Operations().(*fileNode)
	}
	unlock := lockFiles([]*fileNode{f, target})
	defer unlock()
	if err := d.fsys.awaitDelete(ctx, dstKey); err != nil {
		return d.fsys.toErrno("rename", dstKey, err)
	}
	if f != nil && d.fsys.opts.FastClose {
		// A file whose upload has not started moves without a request: it
		// is uploaded once, under its new name.
		f.mu.Lock()
		stored, storedETag := f.exists, f.obj.ETag
		f.mu.Unlock()
		cond, err := d.fsys.replaceCond(ctx, dstKey, target)
		if err != nil {
			return d.fsys.toErrno("rename", dstKey, err)
		}
		if f.rekey(dstKey, cond) {
			if stored {
				d.fsys.deleteLater(srcKey, storedETag) // the version the new contents replace
			}
			d.fsys.changed(dstKey)
			if target != nil && target != f {
				target.unlink()
			}
			return 0
		}
	}
	if f != nil {
		// A file being written is completed under its old name first.
		if err := f.syncHeld(ctx); err != nil {
			return d.fsys.toErrno("rename", srcKey, err)
		}
	}
	src, opts, err := d.renameSource(ctx, f, srcKey, dstKey, false)
	if err != nil {
		return d.fsys.toErrno("rename", srcKey, err)
	}
	obj, err := d.fsys.copyObject(ctx, src, dstKey, opts)
	if errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotExist) {
		// Another client replaced or removed the object since this mount
		// saw it: rename moves whatever the name holds now.
		if src, opts, err = d.renameSource(ctx, f, srcKey, dstKey, true); err != nil {
			return d.fsys.toErrno("rename", srcKey, err)
		}
		obj, err = d.fsys.copyObject(ctx, src, dstKey, opts)
	}
	if err != nil {
		return d.fsys.toErrno("rename", srcKey, err)
	}
	// The new name holds the file: rename is done. The old name reads as
	// missing through this mount from now on and is deleted in the
	// background; see "Rename" in the package comment.
	d.fsys.deleteLater(srcKey, src.ETag)
	if c := d.fsys.opts.Cache; c != nil {
		c.Forget(src) // cached under the old key, which is gone
	}
	if target != nil && target != f {
		// The replaced file loses its name: whatever its descriptors
		// still write must never reach S3.
		target.unlink()
	}
	if n != nil {
		n.moved(dstKey, obj)
	}
	if f != nil && opts != nil {
		f.metaWritten(obj.Metadata)
	}
	return 0
}

// newNameCond is what a write of a name that lookup found missing requires:
// that it is still missing, with Options.Conditional.
func (fsys *filesystem) newNameCond() store.Condition {
	return store.Condition{IfNoneMatch: fsys.opts.Conditional}
}

// replaceCond is what a write of a new file at key requires of the object
// there: the version this mount knows (target's, when the tree has the
// node), or no object at all. Without Options.Conditional, nothing.
func (fsys *filesystem) replaceCond(ctx context.Context, key string, target *fileNode) (store.Condition, error) {
	if !fsys.opts.Conditional {
		return store.Condition{}, nil
	}
	if target != nil {
		target.mu.Lock()
		exists, etag := target.exists && target.obj.Key == key, target.obj.ETag
		target.mu.Unlock()
		if exists && etag != "" {
			return store.Condition{IfMatch: etag}, nil
		}
	}
	obj, err := fsys.stat(ctx, key)
	switch {
	case err == nil:
		return store.Condition{IfMatch: obj.ETag}, nil
	case errors.Is(err, store.ErrNotExist):
		return store.Condition{IfNoneMatch: true}, nil
	}
	return store.Condition{}, err
}

// renameSource returns the object to copy for a rename of srcKey and the
// metadata the copy gives it (nil: the source's). A file that this mount
// knows as stored is copied from that version, with no request to ask for
// it again: the copy is pinned to its ETag, so a version replaced meanwhile
// fails the copy, and fresh asks S3 for the current one. Pending metadata
// changes of the file ride on the copy.
func (d *dirNode) renameSource(ctx context.Context, f *fileNode, srcKey, dstKey string, fresh bool) (store.Object, *store.PutOptions, error) {
	var src store.Object
	known := false
	if f != nil && !fresh {
		f.mu.Lock()
		if f.exists && f.obj.Key == srcKey && f.obj.ETag != "" && f.obj.Metadata != nil {
			src, known = f.obj, true
		}
		f.mu.Unlock()
	}
	if !known {
		var err error
		if src, err = d.fsys.statFresh(ctx, srcKey); err != nil {
			return store.Object{}, nil, err
		}
	}
	if f == nil {
		return src, nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.localAttrs {
		return src, nil, nil
	}
	return src, &store.PutOptions{
		Metadata:    f.attrs.metadata(src.Metadata, syscall.S_IFREG),
		ContentType: contentType(dstKey),
	}, nil
}

// nameExists reports whether key is taken, by an object or a directory, as
// S3 says now.
func (fsys *filesystem) nameExists(ctx context.Context, key string) (bool, error) {
	_, err := fsys.statFresh(ctx, key)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if len(key)+1 > maxKeyLen {
		return false, nil // no directory can have this name
	}
	page, err := fsys.opts.Store.List(ctx, key+"/", "/", "", 1)
	if err != nil {
		return false, err
	}
	return len(page.Objects) > 0 || len(page.Prefixes) > 0, nil
}

// lockFiles takes op exclusively on each distinct non-nil node, in inode
// number order so that two renames sharing nodes cannot deadlock, and
// returns the function that releases them.
func lockFiles(nodes []*fileNode) (unlock func()) {
	nodes = slices.DeleteFunc(slices.Clone(nodes), func(n *fileNode) bool { return n == nil })
	slices.SortFunc(nodes, func(a, b *fileNode) int {
		ia, ib := a.StableAttr().Ino, b.StableAttr().Ino
		switch {
		case ia < ib:
			return -1
		case ia > ib:
			return 1
		}
		return 0
	})
	nodes = slices.Compact(nodes)
	for _, n := range nodes {
		n.op.Lock()
	}
	return func() {
		for _, n := range nodes {
			n.op.Unlock()
		}
	}
}

// walkTree calls fn for every node below in that the tree knows, parents
// before their children. It holds none of this package's locks.
func walkTree(in *fusefs.Inode, fn func(fusefs.InodeEmbedder)) {
	for _, ch := range in.Children() {
		ops := ch.Operations()
		fn(ops)
		if _, ok := ops.(*dirNode); ok {
			walkTree(ch, fn)
		}
	}
}
