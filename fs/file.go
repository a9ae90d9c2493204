package fs

import (
	"context"
	"errors"
	"maps"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/writeback"
)

// fileNode is a regular file: one object key, plus the file's writeback state
// while it is open for writing.
type fileNode struct {
	fusefs.Inode
	fsys *filesystem

	// op is held shared by every operation that creates, uses or drops the
	// state (open, read, write, truncate, sync, release) and exclusively by
	// those that replace the state or move the object: rename, and a
	// metadata change of a stored object. Like writeback.File's opMu it is
	// held across network calls, as the file must not move under a write.
	// It is taken before mu, and at most once by one operation: a second
	// shared lock would deadlock behind a waiting rename.
	op sync.RWMutex

	mu     sync.Mutex
	key    string       // the object key; changes on rename; guarded by mu
	obj    store.Object // the stored object as last seen; guarded by mu
	exists bool         // obj describes a stored object; guarded by mu
	statAt time.Time    // when obj was last confirmed; guarded by mu
	attrs  attrs        // guarded by mu
	// localAttrs: attrs were changed through this mount and win over the
	// object's metadata until they are written with the file.
	localAttrs bool // guarded by mu
	// metaPending: the stored object lacks changes in attrs that no upload
	// of the state will carry; fsys.later lists the file. See setAttrs.
	metaPending bool // guarded by mu
	// setWhileDirty: chmod, chown or utimes changed attrs while the state
	// held changes, which a multipart upload already under way does not
	// carry (see syncHeld). guarded by mu
	setWhileDirty bool
	// queued: a background upload of the state is due (fast close).
	queued bool // guarded by mu
	// bgErr is the failure of the last background upload, until the next
	// close or fsync of the file reports it. guarded by mu
	bgErr error
	// state is the file's one writeback state, shared by all its handles;
	// nil when the file is not open for writing. guarded by mu
	state *writeback.File
	// users counts open handles and the operations that hold the state
	// without a handle (truncate); the state is dropped when it reaches 0.
	users int // guarded by mu
	// unlinked: the name was removed; the state, if any, must never reach
	// S3 again. guarded by mu
	unlinked bool
	// ver is the content of the stored object as last seen, which new
	// handles read; handles keep the version they opened. guarded by mu
	ver *fileVersion
	// pageVer is the version whose bytes the kernel's page cache holds,
	// nil when it may hold anything else, and pageOpen counts the open
	// handles that read through the page cache (not FOPEN_DIRECT_IO).
	// See Open. guarded by mu
	pageVer  *fileVersion
	pageOpen int
}

// fileVersion is one content of a stored file, shared by the handles that
// read it. Its obj changes in place only when the bytes stay the same (a
// rename or a metadata change copies the object), so that those handles
// follow the object to its new key or ETag. obj is guarded by the file's mu.
type fileVersion struct {
	obj store.Object
}

// setVersionLocked records obj as the stored content: the current version
// when obj has its ETag and size, else a new one.
func (n *fileNode) setVersionLocked(obj store.Object) {
	if v := n.ver; v != nil && obj.ETag != "" && v.obj.ETag == obj.ETag && v.obj.Size == obj.Size {
		v.obj = obj
		return
	}
	n.ver = &fileVersion{obj: obj}
}

// copiedLocked records that the stored object was copied to obj, with the
// same bytes under a new key or ETag (rename, metadata change).
func (n *fileNode) copiedLocked(obj store.Object) {
	n.obj = obj
	if n.ver == nil {
		n.ver = &fileVersion{obj: obj}
		return
	}
	n.ver.obj = obj
}

func newFileNode(fsys *filesystem, key string) *fileNode {
	return &fileNode{fsys: fsys, key: key, attrs: defaultFileAttrs(fsys, fsys.mountTime)}
}

func (n *fileNode) keyNow() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.key
}

// hasState reports whether the file has a state that is the truth about it:
// such a file may not be in S3 yet.
func (n *fileNode) hasState() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state != nil && !n.unlinked
}

func (n *fileNode) dirty() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state != nil && !n.unlinked && n.state.Dirty()
}

// setObject records obj as the stored object. A file with a state keeps its
// own view until the state is synced. An answer about a key the file no
// longer has (a rename ran meanwhile) is ignored.
func (n *fileNode) setObject(obj store.Object) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if obj.Key != n.key {
		return
	}
	n.exists, n.statAt = true, time.Now()
	if n.state != nil {
		return
	}
	if !n.localAttrs {
		n.attrs = defaultFileAttrs(n.fsys, obj.LastModified).withMetadata(obj.Metadata).since(n.attrs)
	}
	n.obj = obj
	n.setVersionLocked(obj)
}

func (n *fileNode) sizeLocked() int64 {
	if n.state != nil {
		return n.state.Size()
	}
	return n.obj.Size
}

func (n *fileNode) fillEntry(out *fuse.EntryOut) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fillLocked(&out.Attr)
}

// fillLocked writes the file's attributes into out. A file unlinked while
// open has no name left: fstat on its descriptors reports no links.
func (n *fileNode) fillLocked(out *fuse.Attr) {
	n.attrs.fill(out, syscall.S_IFREG, n.sizeLocked())
	if n.unlinked {
		out.Nlink = 0
	}
}

// putOptionsLocked are the attributes the next upload of the file carries.
func (n *fileNode) putOptionsLocked() store.PutOptions {
	return store.PutOptions{
		Metadata:    n.attrs.metadata(n.obj.Metadata, syscall.S_IFREG),
		ContentType: contentType(n.key),
	}
}

// startStateLocked gives the file its state, starting from base (nil: empty).
func (n *fileNode) startStateLocked(base *store.Object) {
	n.state = n.openStateLocked(n.key, base)
	n.pageVer = nil
	n.fsys.addState(n)
}

// openStateLocked returns a new state for key starting from base, whose
// writes state the version they replace (see "Many hosts" in the package
// comment): base's ETag, or, for a file that starts empty, the version this
// mount knows under key, or no object at all.
func (n *fileNode) openStateLocked(key string, base *store.Object) *writeback.File {
	opts := n.putOptionsLocked()
	if n.fsys.opts.Conditional {
		switch {
		case base != nil && base.ETag != "":
			opts.Cond = store.Condition{IfMatch: base.ETag}
		case base == nil && n.exists && n.obj.Key == key && n.obj.ETag != "":
			opts.Cond = store.Condition{IfMatch: n.obj.ETag}
		default:
			opts.Cond = store.Condition{IfNoneMatch: true}
		}
	}
	return n.fsys.opts.Writer.Open(key, base, opts)
}

// create sets up a new file and returns its first handle.
func (n *fileNode) create(a attrs, flags uint32) *fileHandle {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attrs = a
	n.startStateLocked(nil)
	n.users++
	n.pageOpen++
	// Even an O_RDONLY create makes a file, so this handle's close stores it.
	return &fileHandle{n: n, syncs: true}
}

// sync makes the state durable (see syncHeld), then pending metadata
// changes (see setAttrs).
func (n *fileNode) sync(ctx context.Context) error {
	n.op.RLock()
	err := n.syncHeld(ctx)
	n.op.RUnlock()
	if err != nil {
		return err
	}
	return n.writeMeta(ctx)
}

// syncHeld makes the state durable and records the object it produced. It
// is a no-op for a file without a state or one that was unlinked. The caller
// holds op, shared or exclusively.
func (n *fileNode) syncHeld(ctx context.Context) error {
	n.mu.Lock()
	st := n.state
	if st == nil || n.unlinked {
		n.mu.Unlock()
		return nil
	}
	opts := n.putOptionsLocked()
	st.SetOptions(opts)
	key, wasDirty := n.key, st.Dirty()
	n.mu.Unlock()

	obj, err := st.Sync(ctx)
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			// Another client stored the file first: what this mount knows
			// of the key is stale.
			n.fsys.changed(key)
		}
		return err
	}
	if obj.Metadata == nil {
		obj.Metadata = opts.Metadata
	}
	n.mu.Lock()
	n.obj, n.exists, n.statAt = obj, true, time.Now()
	n.setVersionLocked(obj)
	n.bgErr = nil // stored now: an earlier background failure is moot
	pending := wasDirty && n.metaPending
	// A multipart upload carries the metadata it was created with. A
	// chmod, chown or utimes made after that is written by a copy of its
	// own (cp -p sets the times before close); the mtime that the writes
	// themselves moved is not worth one.
	stale := wasDirty && n.setWhileDirty && !maps.Equal(obj.Metadata, opts.Metadata) && !n.metaPending && !n.unlinked
	if wasDirty {
		n.setWhileDirty = false
	}
	if wasDirty && !stale {
		// The upload carried the attributes.
		n.localAttrs, n.metaPending = false, false
	}
	if stale {
		n.localAttrs, n.metaPending = true, true
		pending = false
	}
	unlinked := n.unlinked
	n.mu.Unlock()
	if pending {
		n.fsys.metaPendingDone(n)
	}
	if stale {
		n.fsys.metaPendingAdd(n)
	}
	if unlinked {
		// Unlink ran while the upload was in flight and may have deleted
		// the key before the upload completed; the file must stay gone.
		err = n.fsys.opts.Store.Delete(ctx, key)
		n.fsys.changed(key)
		return err
	}
	if wasDirty {
		n.fsys.stored(obj)
	}
	return nil
}

// syncIfDirty is sync for SyncAll: it skips files with nothing to upload.
func (n *fileNode) syncIfDirty(ctx context.Context) error {
	if !n.dirty() {
		return nil
	}
	return n.sync(ctx)
}

// emptyReplacement reports whether the state would replace a non-empty
// stored object with an empty one that nothing was written to (see Flush).
func (n *fileNode) emptyReplacement() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.state
	return st != nil && !n.unlinked && n.exists && n.obj.Size > 0 && st.Dirty() && st.Size() == 0
}

// releaseHeld ends one use of the state. The last one syncs a state that is
// still dirty (a FLUSH failed or never came), logging a failure as nobody
// is left to hear of it, and drops the state. The caller holds op shared.
func (n *fileNode) releaseHeld() {
	n.mu.Lock()
	n.users--
	st := n.state
	if n.users > 0 || st == nil {
		n.mu.Unlock()
		return
	}
	syncFirst := !n.unlinked && st.Dirty()
	if n.fsys.opts.FastClose && (syncFirst || n.queued || n.bgErr != nil) {
		// The background upload owns the state now (dropIdleState), or
		// keeps it to report its failure.
		n.mu.Unlock()
		if syncFirst {
			n.queueUpload()
		}
		return
	}
	n.mu.Unlock()

	if syncFirst {
		if err := n.syncHeld(context.Background()); err != nil {
			n.fsys.log.Error("changes lost: upload failed after the last close", "key", n.keyNow(), "err", err)
		}
	}
	n.mu.Lock()
	if n.users > 0 || n.state != st {
		// Opened again meanwhile: the new handles own the state now.
		n.mu.Unlock()
		return
	}
	n.state = nil
	n.fsys.removeState(n)
	n.mu.Unlock()
	st.Discard()
}

// unlink marks the file deleted and drops its state. Handles still open keep
// the state until they are released, so they go on working on a nameless
// file, but nothing of it is uploaded again.
func (n *fileNode) unlink() {
	n.mu.Lock()
	n.unlinked = true
	st := n.state
	drop := st != nil && n.users == 0
	if drop {
		n.state = nil
		n.fsys.removeState(n)
	}
	// Cached blocks of the object are of no use to anyone once it is
	// gone, unless a descriptor still reads them.
	var forget *store.Object
	if n.users == 0 && n.ver != nil {
		obj := n.ver.obj
		forget = &obj
	}
	n.mu.Unlock()
	if drop {
		st.Discard()
	}
	if forget != nil && n.fsys.opts.Cache != nil {
		n.fsys.opts.Cache.Forget(*forget)
	}
}

// truncate sets the file's size, opening a state for it when the file has
// none, and syncs it when syncNow is set.
func (n *fileNode) truncate(ctx context.Context, size int64, syncNow bool) error {
	n.op.RLock()
	defer n.op.RUnlock()
	if size > 0 && !n.hasState() {
		// The object becomes the base of the new state: it must be current.
		key := n.keyNow()
		obj, err := n.fsys.statFresh(ctx, key)
		if err != nil {
			return err
		}
		n.setObject(obj)
	}
	n.mu.Lock()
	if n.state == nil {
		if !n.exists {
			n.mu.Unlock()
			return store.ErrNotExist
		}
		var base *store.Object
		if size > 0 {
			obj := n.obj
			base = &obj
		}
		n.startStateLocked(base)
	}
	n.users++
	n.attrs.modified()
	st := n.state
	n.mu.Unlock()

	err := st.Truncate(ctx, size)
	if err == nil && syncNow {
		err = n.syncHeld(context.WithoutCancel(ctx))
	}
	n.releaseHeld()
	return err
}

// moved re-points the file at key after a rename copied its object there as
// obj. A writeback.File writes to the key it was opened on, so a state is
// replaced by a fresh one on the new key whose base is obj. The caller holds
// op exclusively and synced the state first: the old state holds nothing
// that obj does not.
func (n *fileNode) moved(key string, obj store.Object) {
	n.mu.Lock()
	n.key = key
	if obj.ETag == "" {
		// Not stored: the next stat asks S3 about the new key.
		n.obj.Key, n.statAt = key, time.Time{}
		n.mu.Unlock()
		return
	}
	if obj.Metadata == nil {
		obj.Metadata = n.obj.Metadata // copied with the object
	}
	old := n.state
	// Same bytes: open handles and the page cache stay valid.
	n.copiedLocked(obj)
	n.attrs.ctime = now()
	n.exists, n.statAt = true, time.Now()
	if old != nil {
		n.state = n.openStateLocked(key, &obj)
	}
	n.mu.Unlock()
	if old != nil {
		old.Discard()
	}
}
