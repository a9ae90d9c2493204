package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

// maxNameLen is Linux's NAME_MAX; longer names cannot be looked up, so
// listings leave out keys that would need them.
const maxNameLen = 255

// maxKeyLen is S3's limit on the length of a key, in bytes.
const maxKeyLen = 1024

// dirNode is a directory: the mount's root, a "name/" marker object, or a
// common prefix of other keys.
type dirNode struct {
	fusefs.Inode
	fsys *filesystem

	mu sync.Mutex
	// prefix is the directory's key prefix: "" for the root of a bucket,
	// otherwise ending in "/". It changes when the directory or one above
	// it is renamed. guarded by mu
	prefix string
	attrs  attrs // guarded by mu
	// entriesAt is when this mount last added or removed an entry; see
	// entriesChanged. guarded by mu
	entriesAt time.Time
	// metaPending: attrs hold changes the marker does not have yet; see
	// Setattr. removed: the directory was removed (rmdir) or moved away
	// (rename), and its marker must not be written again. guarded by mu
	metaPending, removed bool
	// metaMu serializes writes of the marker's metadata; taken before mu.
	metaMu sync.Mutex
}

// entriesChanged records that an entry was added to or removed from the
// directory now, which changes its mtime and ctime. S3 has no directory
// object to keep them in, and writing the marker again for every entry
// would double the cost of every create and unlink, so they are kept in
// memory by this mount (and stored with the marker by the next chmod,
// chown or utimes of the directory).
func (d *dirNode) entriesChanged() {
	d.mu.Lock()
	d.entriesAt = now()
	d.mu.Unlock()
}

// childAttrs are the attributes of an entry the caller of ctx creates in
// the directory now. In a set-group-ID directory the entry takes the
// directory's group, and a subdirectory the set-group-ID bit too, as on
// Linux's own file systems (the kernel leaves this to the file system).
func (d *dirNode) childAttrs(ctx context.Context, mode uint32, dir bool) attrs {
	a := newAttrs(ctx, d.fsys, mode)
	d.mu.Lock()
	parent := d.attrs
	d.mu.Unlock()
	if parent.perm&syscall.S_ISGID != 0 {
		a.gid = parent.gid
		if dir {
			a.perm |= syscall.S_ISGID
		}
	}
	return a
}

// attrsLocked are the directory's attributes with entriesAt applied.
func (d *dirNode) attrsLocked() attrs {
	a := d.attrs
	if d.entriesAt.After(a.mtime) {
		a.mtime = d.entriesAt
	}
	if d.entriesAt.After(a.ctime) {
		a.ctime = d.entriesAt
	}
	return a
}

func (d *dirNode) init(fsys *filesystem, prefix string, a attrs) {
	d.fsys, d.prefix, d.attrs = fsys, prefix, a
}

func (d *dirNode) prefixNow() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prefix
}

// validName reports whether name can stand for a key segment.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen
}

func (d *dirNode) childKey(name string) (string, syscall.Errno) {
	if d.reserved(name) {
		return "", reservedErrno
	}
	prefix := d.prefixNow()
	if len(name) > maxNameLen || len(prefix)+len(name) > maxKeyLen {
		return "", syscall.ENAMETOOLONG
	}
	return prefix + name, 0
}

// dirKey is childKey for a directory: its marker, the key plus "/", must
// fit too.
func (d *dirNode) dirKey(name string) (string, syscall.Errno) {
	key, errno := d.childKey(name)
	if errno == 0 && len(key)+1 > maxKeyLen {
		return "", syscall.ENAMETOOLONG
	}
	return key, errno
}

func (d *dirNode) readOnly() bool { return d.fsys.opts.ReadOnly }

var _ = (fusefs.NodeLookuper)((*dirNode)(nil))

// Lookup finds name as an object first and as a directory second, so that a
// file shadows keys under "name/".
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.reserved(name) {
		return nil, syscall.ENOENT
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return nil, errno
	}
	// A file with a state may not be in S3 yet (or any more); the state is
	// the truth for it.
	ch := d.GetChild(name)
	if ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok && f.hasState() {
			f.fillEntry(out)
			return ch, 0
		}
	}
	// A file the kernel forgot may still have bytes on their way to S3
	// (fast close) or metadata changes to write, which S3 does not show
	// yet: they are stored first.
	if f := d.fsys.stateAt(key); f != nil && (ch == nil || ch.Operations() != f) {
		if err := f.sync(ctx); err != nil {
			return nil, d.fsys.toErrno("lookup", key, err)
		}
	}
	if f := d.fsys.metaPendingAt(key); f != nil && (ch == nil || ch.Operations() != f) {
		if err := f.writeMeta(ctx); err != nil {
			return nil, d.fsys.toErrno("lookup", key, err)
		}
	}
	obj, err := d.fsys.stat(ctx, key)
	if err == nil {
		return d.objectChild(ctx, name, obj, out), 0
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, d.fsys.toErrno("lookup", key, err)
	}
	if len(key)+1 > maxKeyLen {
		return nil, syscall.ENOENT // no directory can have this name
	}
	a, found, err := d.findDir(ctx, key+"/")
	if err != nil {
		return nil, d.fsys.toErrno("lookup", key+"/", err)
	}
	if !found {
		return nil, syscall.ENOENT
	}
	return d.dirChild(ctx, key+"/", name, a, out), 0
}

// findDir reports whether anything exists under prefix, and the directory's
// attributes, from its marker object when there is one. The metadata cache
// remembers an empty prefix for NegativeTTL (meta.Cache.FindDir).
func (d *dirNode) findDir(ctx context.Context, prefix string) (attrs, bool, error) {
	a := defaultDirAttrs(d.fsys)
	found, marker, err := d.fsys.meta.FindDir(ctx, prefix)
	if err != nil || !found {
		return a, false, err
	}
	if marker {
		if a, err = markerAttrs(ctx, d.fsys, prefix); err != nil {
			return a, false, err
		}
	}
	return a, true, nil
}

// objectChild returns the inode for the object obj found under name: a
// file, a link or a special file, as its metadata says.
func (d *dirNode) objectChild(ctx context.Context, name string, obj store.Object, out *fuse.EntryOut) *fusefs.Inode {
	if isSymlink(obj.Metadata) {
		return d.symlinkChild(ctx, name, obj, out)
	}
	if typ := specialType(obj.Metadata); typ != 0 {
		return d.specialChild(ctx, name, typ, obj, out)
	}
	return d.fileChild(ctx, name, obj, out)
}

// fileChild returns the inode for the object obj found under name, reusing
// the one the tree has, so that attributes and open handles stay together.
func (d *dirNode) fileChild(ctx context.Context, name string, obj store.Object, out *fuse.EntryOut) *fusefs.Inode {
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok {
			f.setObject(obj)
			f.fillEntry(out)
			return ch
		}
	}
	f := newFileNode(d.fsys, obj.Key)
	f.setObject(obj)
	ch := d.NewInode(ctx, f, fusefs.StableAttr{Mode: syscall.S_IFREG})
	f.fillEntry(out)
	return ch
}

// dirChild returns the inode for the directory prefix found under name.
func (d *dirNode) dirChild(ctx context.Context, prefix, name string, a attrs, out *fuse.EntryOut) *fusefs.Inode {
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*dirNode); ok {
			sub.mu.Lock()
			if !sub.metaPending { // this mount's changes win until written
				sub.attrs = a
			}
			sub.removed = false // made again
			a = sub.attrsLocked()
			sub.mu.Unlock()
			a.fill(&out.Attr, syscall.S_IFDIR, 0)
			return ch
		}
	}
	sub := &dirNode{}
	sub.init(d.fsys, prefix, a)
	a.fill(&out.Attr, syscall.S_IFDIR, 0)
	return d.NewInode(ctx, sub, fusefs.StableAttr{Mode: syscall.S_IFDIR})
}

var _ = (fusefs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	a := d.attrsLocked()
	d.mu.Unlock()
	a.fill(&out.Attr, syscall.S_IFDIR, 0)
	return 0
}

var _ = (fusefs.NodeSetattrer)((*dirNode)(nil))

// Setattr changes mode, owner and mtime. A directory's marker is an empty
// object, so the change is stored by writing the marker again, as a pending
// metadata change is (see "Metadata changes" in the package comment):
// mkdir, chmod and utimes in a row, as rsync does for every directory,
// cost the mkdir's marker and one more. The bucket root (empty prefix) has
// no marker and keeps the change in memory.
func (d *dirNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if d.readOnly() {
		return syscall.EROFS
	}
	if _, ok := in.GetSize(); ok {
		return syscall.EISDIR
	}
	d.mu.Lock()
	a := d.attrsLocked().setattr(in)
	d.attrs, d.entriesAt = a, time.Time{}
	pend := d.prefix != "" && !d.metaPending && !d.removed
	if pend {
		d.metaPending = true
	}
	d.mu.Unlock()
	if pend {
		d.fsys.dirPendingAdd(d)
	}
	a.fill(&out.Attr, syscall.S_IFDIR, 0)
	return 0
}

// markRemoved records that the directory is gone: its pending metadata is
// dropped, and a write of it in flight finishes first.
func (d *dirNode) markRemoved() {
	d.metaMu.Lock()
	d.mu.Lock()
	d.removed, d.metaPending = true, false
	d.mu.Unlock()
	d.metaMu.Unlock()
	d.fsys.dirPendingDone(d)
}

// writeMeta stores the directory's pending metadata changes by writing its
// marker again.
func (d *dirNode) writeMeta(ctx context.Context) error {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	d.mu.Lock()
	if !d.metaPending || d.removed {
		d.metaPending = false
		d.mu.Unlock()
		d.fsys.dirPendingDone(d)
		return nil
	}
	a, prefix, set := d.attrsLocked(), d.prefix, d.attrs
	d.mu.Unlock()
	opts := store.PutOptions{Metadata: a.metadata(nil, syscall.S_IFDIR), ContentType: dirContentType}
	marker, err := d.fsys.opts.Store.Put(context.WithoutCancel(ctx), prefix, nil, store.Sum(nil), opts)
	if err != nil {
		return fmt.Errorf("store the metadata of directory %q: %w", prefix, err)
	}
	marker.Key, marker.Size, marker.Metadata = prefix, 0, opts.Metadata
	d.fsys.stored(marker)
	d.mu.Lock()
	// A change made while the marker was written waits for the next one.
	again := d.attrs != set && !d.removed
	d.metaPending = again
	d.mu.Unlock()
	d.fsys.dirPendingDone(d)
	if again {
		d.fsys.dirPendingAdd(d)
	}
	return nil
}

var _ = (fusefs.NodeMkdirer)((*dirNode)(nil))

// Mkdir writes the marker object "name/" with an empty body.
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.readOnly() {
		return nil, syscall.EROFS
	}
	key, errno := d.dirKey(name)
	if errno != 0 {
		return nil, errno
	}
	key += "/"
	a := d.childAttrs(ctx, mode, true)
	opts := store.PutOptions{Metadata: a.metadata(nil, syscall.S_IFDIR), ContentType: dirContentType}
	opts.Cond = d.fsys.newNameCond()
	marker, err := d.fsys.opts.Store.Put(context.WithoutCancel(ctx), key, nil, store.Sum(nil), opts)
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			return nil, syscall.EEXIST // another client made the name meanwhile
		}
		return nil, d.fsys.toErrno("mkdir", key, err)
	}
	// The kernel looked the name up first and found nothing: the new
	// directory is empty, and lookups in it need not ask S3.
	marker.Key, marker.Size, marker.Metadata = key, 0, opts.Metadata
	d.fsys.meta.CreatedDir(marker)
	d.entriesChanged()
	return d.dirChild(ctx, key, name, a, out), 0
}

var _ = (fusefs.NodeRmdirer)((*dirNode)(nil))

// Rmdir deletes the marker of an empty directory. A directory is empty when
// nothing but its marker exists under its prefix and no file created in it
// is still on its way to S3.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if d.readOnly() {
		return syscall.EROFS
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return errno
	}
	prefix := key + "/"
	if ch := d.GetChild(name); ch != nil {
		for _, gc := range ch.Children() {
			if f, ok := gc.Operations().(*fileNode); ok && f.hasState() {
				return syscall.ENOTEMPTY
			}
		}
	}
	for _, f := range d.fsys.stateNodes() {
		if strings.HasPrefix(f.keyNow(), prefix) && f.hasState() {
			return syscall.ENOTEMPTY // a file the kernel forgot, on its way to S3
		}
	}
	ctx = context.WithoutCancel(ctx)
	// Old names of files renamed away are deleted in the background; an
	// emptied directory must not look full because of them.
	d.fsys.waitDeletes(ctx, prefix)
	page, err := d.fsys.opts.Store.List(ctx, prefix, "", "", 2)
	if err != nil {
		return d.fsys.toErrno("rmdir", prefix, err)
	}
	for _, obj := range page.Objects {
		if obj.Key != prefix {
			return syscall.ENOTEMPTY
		}
	}
	if len(page.Prefixes) > 0 {
		return syscall.ENOTEMPTY
	}
	var removed *dirNode
	if ch := d.GetChild(name); ch != nil {
		if sub, ok := ch.Operations().(*dirNode); ok {
			removed = sub
			sub.markRemoved() // before the delete: a pending write must not bring it back
		}
	}
	if err := d.fsys.opts.Store.Delete(ctx, prefix); err != nil {
		if removed != nil {
			removed.mu.Lock()
			removed.removed = false
			removed.mu.Unlock()
		}
		return d.fsys.toErrno("rmdir", prefix, err)
	}
	d.fsys.changedDir(prefix)
	d.entriesChanged()
	return 0
}

var _ = (fusefs.NodeUnlinker)((*dirNode)(nil))

// Unlink deletes the object and drops the file's state, so that no later
// sync brings the object back.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.readOnly() {
		return syscall.EROFS
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return errno
	}
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok {
			f.unlink()
		}
	}
	if err := d.fsys.opts.Store.Delete(context.WithoutCancel(ctx), key); err != nil {
		return d.fsys.toErrno("unlink", key, err)
	}
	d.fsys.removed(key)
	d.entriesChanged()
	return 0
}

var _ = (fusefs.NodeCreater)((*dirNode)(nil))

// Create makes a file that exists at once for this mount (as a state) and in
// S3 once the first close or fsync uploads it.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if d.readOnly() {
		return nil, nil, 0, syscall.EROFS
	}
	key, errno := d.childKey(name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// A renamed file's old name may still be on its way out; the new file
	// must not be deleted with it.
	if err := d.fsys.awaitDelete(ctx, key); err != nil {
		return nil, nil, 0, d.fsys.toErrno("create", key, err)
	}
	f := newFileNode(d.fsys, key)
	h := f.create(d.childAttrs(ctx, mode, false), flags)
	ch := d.NewInode(ctx, f, fusefs.StableAttr{Mode: syscall.S_IFREG})
	f.fillEntry(out)
	d.entriesChanged()
	return ch, h, 0, 0
}

var _ = (fusefs.NodeStatfser)((*dirNode)(nil))

// Statfs reports a large, mostly free file system: S3 has no capacity to
// report, and tools such as cp and df refuse to write to a full one.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const blockSize = 4096
	const blocks = 1 << 40 // 4 PiB in 4 KiB blocks
	out.Bsize = blockSize
	out.Frsize = blockSize
	out.Blocks = blocks
	out.Bfree = blocks
	out.Bavail = blocks
	out.Files = 1 << 32
	out.Ffree = 1 << 32
	out.NameLen = maxNameLen
	return 0
}

var _ = (fusefs.NodeFsyncer)((*dirNode)(nil))

// Fsync of a directory writes the pending metadata changes of the files
// below it and waits for the deletes of renamed files' old names. Mkdir,
// Rmdir and Unlink are done in S3 before they return. Programs fsync
// directories after creating files, as they must on local disks.
func (d *dirNode) Fsync(ctx context.Context, f fusefs.FileHandle, flags uint32) syscall.Errno {
	ctx, cancel := d.fsys.replyContext(ctx)
	defer cancel()
	prefix := d.prefixNow()
	if d.fsys.opts.FastClose {
		if err := d.fsys.syncBelow(ctx, prefix); err != nil {
			return d.fsys.toErrno("fsync", prefix, err)
		}
	}
	if err := d.fsys.writeAllMeta(ctx, prefix); err != nil {
		return d.fsys.toErrno("fsync", prefix, err)
	}
	if err := d.fsys.awaitDeletes(ctx, prefix); err != nil {
		return d.fsys.toErrno("fsync", prefix, err)
	}
	return 0
}

var _ = (fusefs.NodeOpendirHandler)((*dirNode)(nil))

func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, 0, 0
}
