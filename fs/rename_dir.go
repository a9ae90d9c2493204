package fs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/store"
)

// renameConcurrency bounds the copies, and then the deletes, of one
// directory rename that are in flight at once.
const renameConcurrency = 16

// renameDir moves the directory srcPrefix (node n, nil when the tree has
// none) to dstPrefix: every object under it is copied, and only once every
// copy exists are the sources deleted. See "Rename" in the package comment.
func (d *dirNode) renameDir(ctx context.Context, n *dirNode, srcPrefix string, dst *dirNode, newName, dstPrefix string, noReplace bool) syscall.Errno {
	if strings.HasPrefix(dstPrefix, srcPrefix) {
		return syscall.EINVAL // into itself
	}
	targetMarker, errno := d.renameTarget(ctx, dst, newName, dstPrefix, noReplace)
	if errno != 0 {
		return errno
	}
	// The copies carry what S3 holds: pending metadata changes below go
	// first, the old names of files renamed away must be gone, and files
	// the kernel forgot before their upload ended (fast close) stored.
	if err := d.fsys.writeAllMeta(ctx, srcPrefix); err != nil {
		return d.fsys.toErrno("rename", srcPrefix, err)
	}
	d.fsys.waitDeletes(ctx, srcPrefix)
	for _, f := range d.fsys.stateNodes() {
		if strings.HasPrefix(f.keyNow(), srcPrefix) && f.dirty() {
			if err := f.sync(ctx); err != nil {
				return d.fsys.toErrno("rename", f.keyNow(), err)
			}
		}
	}

	// No file below the directory may write or sync while it moves, and
	// the files being written are completed first, so that the listing
	// below holds every byte written so far.
	var files []*fileNode
	if n != nil {
		walkTree(n.EmbeddedInode(), func(node fusefs.InodeEmbedder) {
			if f, ok := node.(*fileNode); ok {
				files = append(files, f)
			}
		})
	}
	unlock := lockFiles(files)
	defer unlock()
	for _, f := range files {
		if err := f.syncHeld(ctx); err != nil {
			return d.fsys.toErrno("rename", f.keyNow(), err)
		}
	}

	objs, err := d.fsys.listAll(ctx, srcPrefix)
	if err != nil {
		return d.fsys.toErrno("rename", srcPrefix, err)
	}
	for _, obj := range objs {
		if len(dstPrefix)+len(obj.Key)-len(srcPrefix) > maxKeyLen {
			return syscall.ENAMETOOLONG
		}
	}
	copies, err := d.fsys.copyAll(ctx, objs, srcPrefix, dstPrefix)
	if err != nil {
		keep := ""
		if targetMarker {
			keep = dstPrefix
		}
		d.fsys.undoCopies(ctx, copies, keep)
		return d.fsys.toErrno("rename", srcPrefix, err)
	}
	err = d.fsys.deleteAll(ctx, objs)
	d.fsys.changedDir(srcPrefix)
	d.fsys.changedDir(dstPrefix)
	if err != nil {
		// Every object is at its new name; some old names remain.
		return d.fsys.toErrno("rename", srcPrefix, err)
	}
	if n != nil {
		n.movedTree(srcPrefix, dstPrefix, copies)
	}
	return 0
}

// renameTarget checks what the rename of a directory would replace at
// dstPrefix: nothing, or an empty directory. It reports whether that
// directory has a marker object.
func (d *dirNode) renameTarget(ctx context.Context, dst *dirNode, newName, dstPrefix string, noReplace bool) (marker bool, errno syscall.Errno) {
	if noReplace {
		exists, err := d.fsys.nameExists(ctx, strings.TrimSuffix(dstPrefix, "/"))
		if err != nil {
			return false, d.fsys.toErrno("rename", dstPrefix, err)
		}
		if exists {
			return false, syscall.EEXIST
		}
		return false, 0
	}
	if ch := dst.GetChild(newName); ch != nil {
		for _, gc := range ch.Children() {
			if f, ok := gc.Operations().(*fileNode); ok && f.hasState() {
				return false, syscall.ENOTEMPTY
			}
		}
	}
	page, err := d.fsys.opts.Store.List(ctx, dstPrefix, "", "", 2)
	if err != nil {
		return false, d.fsys.toErrno("rename", dstPrefix, err)
	}
	for _, obj := range page.Objects {
		if obj.Key != dstPrefix {
			return false, syscall.ENOTEMPTY
		}
		marker = true
	}
	return marker, 0
}

// listAll lists every object under prefix, all pages.
func (fsys *filesystem) listAll(ctx context.Context, prefix string) ([]store.Object, error) {
	var objs []store.Object
	token := ""
	for {
		page, err := fsys.opts.Store.List(ctx, prefix, "", token, 0)
		if err != nil {
			return nil, err
		}
		objs = append(objs, page.Objects...)
		if page.Next == "" {
			return objs, nil
		}
		token = page.Next
	}
}

// copyAll copies every object under srcPrefix to the same name under
// dstPrefix, each pinned to the ETag listed, renameConcurrency at a time. It
// returns the copies that exist, by new key, and the first failure, after
// which it starts no more copies.
func (fsys *filesystem) copyAll(ctx context.Context, objs []store.Object, srcPrefix, dstPrefix string) (map[string]store.Object, error) {
	var mu sync.Mutex
	copies := make(map[string]store.Object, len(objs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(renameConcurrency)
	for _, src := range objs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			dstKey := dstPrefix + strings.TrimPrefix(src.Key, srcPrefix)
			obj, err := fsys.copyObject(gctx, src, dstKey, nil)
			if err != nil {
				return err
			}
			mu.Lock()
			copies[dstKey] = obj
			mu.Unlock()
			return nil
		})
	}
	return copies, g.Wait()
}

// undoCopies deletes the copies of a rename that failed, so that the
// directory stays where it was. The sources were never touched; a copy
// that cannot be deleted is logged and left.
func (fsys *filesystem) undoCopies(ctx context.Context, copies map[string]store.Object, keep string) {
	var g errgroup.Group
	g.SetLimit(renameConcurrency)
	for key := range copies {
		if key == keep {
			continue // the marker of the empty directory the rename replaced
		}
		g.Go(func() error {
			if err := fsys.opts.Store.Delete(ctx, key); err != nil {
				fsys.log.Error("rename failed and its partial copy could not be removed", "key", key, "err", err)
			}
			fsys.changed(key)
			return nil
		})
	}
	_ = g.Wait()
}

// deleteAll deletes the sources of a rename whose copies all exist. It
// tries every key and returns the failures joined.
func (fsys *filesystem) deleteAll(ctx context.Context, objs []store.Object) error {
	var (
		g    errgroup.Group
		mu   sync.Mutex
		errs []error
	)
	g.SetLimit(renameConcurrency)
	for _, obj := range objs {
		g.Go(func() error {
			if err := fsys.opts.Store.Delete(ctx, obj.Key); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// movedTree re-points the directory and every node below it that the tree
// knows from srcPrefix to dstPrefix; copies holds the objects at their new
// keys. The caller holds op of every file below.
func (d *dirNode) movedTree(srcPrefix, dstPrefix string, copies map[string]store.Object) {
	rekey := func(old string) string { return dstPrefix + strings.TrimPrefix(old, srcPrefix) }
	d.mu.Lock()
	d.prefix = rekey(d.prefix)
	d.mu.Unlock()
	walkTree(d.EmbeddedInode(), func(node fusefs.InodeEmbedder) {
		switch n := node.(type) {
		case *dirNode:
			n.mu.Lock()
			n.prefix = rekey(n.prefix)
			n.mu.Unlock()
		case objectNode:
			key := rekey(n.keyNow())
			obj, ok := copies[key]
			if !ok {
				// Known to the tree but not stored (any more): the
				// next lookup asks S3 about the new key.
				obj = store.Object{Key: key}
			}
			n.moved(key, obj)
		}
	})
}
