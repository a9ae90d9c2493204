package fs

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/partfs/partfs/store"
)

// Work this mount does after the operation that asked for it has returned:
// metadata changes waiting to be written (see "Metadata changes" in the
// package comment) and the deletes of renamed files' old names (see
// "Rename"). Both are durability points of their own: fsync of the file or
// of a directory above it, and SyncAll (unmount), wait for them and report
// what failed.

// defaultMetadataDelay is how long a metadata change of a stored file waits
// for a rename or an upload to carry it before it is written by a copy of
// its own. rsync sets a file's mode and times and renames it within
// milliseconds; a person's chmod is written about a second later.
const defaultMetadataDelay = time.Second

// maxBackgroundDeletes bounds the deletes of old names in flight.
const maxBackgroundDeletes = 16

// later is the filesystem's record of that work.
type later struct {
	mu sync.Mutex
	// meta holds the files whose metadata changes are not written yet,
	// dirs the directories.
	meta map[*fileNode]struct{}
	dirs map[*dirNode]struct{}
	// deleting maps an old name being deleted to a channel closed when the
	// delete has ended. While it is there the name reads as missing, and
	// nothing new may be stored under it (awaitDelete).
	deleting map[string]chan struct{}
	// failedDeletes are old names whose delete failed: they still hold a
	// copy of a renamed file. SyncAll tries them again.
	failedDeletes map[string]failedDelete
	slots         chan struct{} // maxBackgroundDeletes tokens
}

// failedDelete is a delete of an old name that failed: the version it was
// to delete, and why.
type failedDelete struct {
	etag string
	err  error
}

func newLater() *later {
	return &later{
		meta:          make(map[*fileNode]struct{}),
		dirs:          make(map[*dirNode]struct{}),
		deleting:      make(map[string]chan struct{}),
		failedDeletes: make(map[string]failedDelete),
		slots:         make(chan struct{}, maxBackgroundDeletes),
	}
}

// metaPendingAdd records that n has metadata to write and arms the timer
// that writes it after the delay.
func (fsys *filesystem) metaPendingAdd(n *fileNode) {
	fsys.later.mu.Lock()
	_, known := fsys.later.meta[n]
	fsys.later.meta[n] = struct{}{}
	fsys.later.mu.Unlock()
	if !known {
		fsys.writeMetaLater(n.writeMeta, n.keyNow)
	}
}

// writeMetaLater calls write after Options.MetadataDelay; a failure is
// logged, and the change stays for fsync and unmount.
func (fsys *filesystem) writeMetaLater(write func(context.Context) error, key func() string) {
	time.AfterFunc(fsys.opts.MetadataDelay, func() {
		if err := write(context.Background()); err != nil {
			fsys.log.Warn("metadata change not stored yet; it is tried again at fsync and unmount",
				"key", key(), "err", err)
		}
	})
}

func (fsys *filesystem) metaPendingDone(n *fileNode) {
	fsys.later.mu.Lock()
	delete(fsys.later.meta, n)
	fsys.later.mu.Unlock()
}

// dirPendingAdd is metaPendingAdd for a directory.
func (fsys *filesystem) dirPendingAdd(d *dirNode) {
	fsys.later.mu.Lock()
	_, known := fsys.later.dirs[d]
	fsys.later.dirs[d] = struct{}{}
	fsys.later.mu.Unlock()
	if !known {
		fsys.writeMetaLater(d.writeMeta, d.prefixNow)
	}
}

func (fsys *filesystem) dirPendingDone(d *dirNode) {
	fsys.later.mu.Lock()
	delete(fsys.later.dirs, d)
	fsys.later.mu.Unlock()
}

// dirPendingNodes returns the directories with metadata to write at or
// below prefix.
func (fsys *filesystem) dirPendingNodes(prefix string) []*dirNode {
	fsys.later.mu.Lock()
	defer fsys.later.mu.Unlock()
	var dirs []*dirNode
	for d := range fsys.later.dirs {
		if strings.HasPrefix(d.prefixNow(), prefix) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// metaPendingNodes returns the files with metadata to write whose keys start
// with prefix.
func (fsys *filesystem) metaPendingNodes(prefix string) []*fileNode {
	fsys.later.mu.Lock()
	defer fsys.later.mu.Unlock()
	var nodes []*fileNode
	for n := range fsys.later.meta {
		if strings.HasPrefix(n.keyNow(), prefix) {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// metaPendingAt returns the file with metadata to write at key, if any.
func (fsys *filesystem) metaPendingAt(key string) *fileNode {
	fsys.later.mu.Lock()
	defer fsys.later.mu.Unlock()
	for n := range fsys.later.meta {
		if n.keyNow() == key {
			return n
		}
	}
	return nil
}

// writeMeta writes the file's pending metadata changes; see writeMetaHeld.
func (n *fileNode) writeMeta(ctx context.Context) error {
	n.op.Lock()
	defer n.op.Unlock()
	return n.writeMetaHeld(ctx)
}

// writeMetaHeld stores the file's pending metadata changes, if it has any,
// with a metadata-replacing copy of the object onto itself pinned to the
// ETag this mount knows. Another client's newer version gets the changes
// too (chmod applies to whatever the name holds). A file whose state holds
// changes needs no copy: its upload carries the metadata. A state that is
// not dirty is re-opened on the copied object, whose ETag may differ. The
// caller holds op exclusively.
func (n *fileNode) writeMetaHeld(ctx context.Context) error {
	n.mu.Lock()
	if !n.metaPending {
		n.mu.Unlock()
		return nil
	}
	if n.unlinked || !n.exists || (n.state != nil && n.state.Dirty()) {
		n.metaPending = false
		n.mu.Unlock()
		n.fsys.metaPendingDone(n)
		return nil
	}
	a, obj, key := n.attrs, n.obj, n.key
	n.mu.Unlock()

	md := func(base store.Metadata) store.Metadata { return a.metadata(base, syscall.S_IFREG) }
	stored, same, err := n.fsys.setMetadata(context.WithoutCancel(ctx), obj, md, contentType(key))
	if err != nil {
		return fmt.Errorf("store the metadata of %q: %w", key, err)
	}
	n.mu.Lock()
	n.metaPending, n.localAttrs = false, false
	if same {
		n.copiedLocked(stored) // same bytes: handles and the page cache stay valid
	} else {
		n.obj = stored
		n.setVersionLocked(stored)
	}
	n.statAt = time.Now()
	old := n.state
	if old != nil {
		n.state = n.openStateLocked(key, &stored)
	}
	n.mu.Unlock()
	n.fsys.metaPendingDone(n)
	if old != nil {
		old.Discard()
	}
	return nil
}

// metaWritten records that a copy of the object (a rename's) stored the
// file's attributes as md. The caller holds op exclusively.
func (n *fileNode) metaWritten(md store.Metadata) {
	n.mu.Lock()
	pending := n.metaPending
	n.metaPending, n.localAttrs = false, false
	if md != nil {
		n.obj.Metadata = md
	}
	n.mu.Unlock()
	if pending {
		n.fsys.metaPendingDone(n)
	}
}

// writeAllMeta writes the pending metadata of every file below prefix ("":
// all), returning one error naming each that failed.
func (fsys *filesystem) writeAllMeta(ctx context.Context, prefix string) error {
	var errs []error
	for _, n := range fsys.metaPendingNodes(prefix) {
		if err := n.writeMeta(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range fsys.dirPendingNodes(prefix) {
		if err := d.writeMeta(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteLater deletes key, the old name of a renamed file, in the
// background. Until the delete has ended the name reads as missing through
// this mount. With Options.Conditional only the version etag is deleted: a
// version another client stored there after the rename's copy stays (see
// deleteVersion).
func (fsys *filesystem) deleteLater(key, etag string) {
	l := fsys.later
	done := make(chan struct{})
	l.mu.Lock()
	prev := l.deleting[key]
	l.deleting[key] = done
	delete(l.failedDeletes, key)
	l.mu.Unlock()
	go func() {
		if prev != nil {
			<-prev
		}
		l.slots <- struct{}{}
		err := fsys.deleteVersion(context.Background(), key, etag, false)
		<-l.slots
		if err == nil {
			fsys.removed(key)
		} else {
			fsys.changed(key)
		}
		l.mu.Lock()
		if l.deleting[key] == done {
			delete(l.deleting, key)
			if err != nil {
				l.failedDeletes[key] = failedDelete{etag: etag, err: err}
			}
		}
		l.mu.Unlock()
		close(done)
		if err != nil {
			fsys.log.Error("rename: the old name could not be deleted and holds a copy of the file; it is tried again at unmount",
				"key", key, "err", err)
		}
	}()
}

// deleteVersion deletes key if it still holds the version etag, where the
// server can make that a condition of the delete (DeleteObject If-Match).
// Where it cannot, the version is checked with a HEAD just before an
// unconditional delete, which leaves a window of one round trip in which a
// new version of another client is lost. A newer version is kept, and so
// reported as deleted: the renamed file's old name now holds someone
// else's file.
//
// verify checks the version even without Options.Conditional: a retry of a
// delete that failed must not remove what was stored since.
func (fsys *filesystem) deleteVersion(ctx context.Context, key, etag string, verify bool) error {
	st := fsys.opts.Store
	if (!fsys.opts.Conditional && !verify) || etag == "" {
		return st.Delete(ctx, key)
	}
	err := store.ErrNotImplemented
	if fsys.opts.Conditional && fsys.opts.ConditionalDelete {
		err = st.DeleteIfMatch(ctx, key, etag)
	}
	if errors.Is(err, store.ErrNotImplemented) {
		var cur store.Object
		cur, err = st.Stat(ctx, key)
		switch {
		case errors.Is(err, store.ErrNotExist):
			return nil
		case err == nil && cur.ETag != etag:
			err = store.ErrPrecondition
		case err == nil:
			return st.Delete(ctx, key)
		}
	}
	if errors.Is(err, store.ErrPrecondition) {
		fsys.log.Warn("rename: another client stored a new version under the old name after the copy; it is kept",
			"key", key)
		return nil
	}
	return err
}

// deletingKey reports whether key is an old name whose delete has not
// ended.
func (fsys *filesystem) deletingKey(key string) bool {
	fsys.later.mu.Lock()
	defer fsys.later.mu.Unlock()
	_, ok := fsys.later.deleting[key]
	return ok
}

// awaitDelete waits until no delete of key is in flight, so that what is
// about to be stored there is not deleted after it.
func (fsys *filesystem) awaitDelete(ctx context.Context, key string) error {
	fsys.later.mu.Lock()
	done := fsys.later.deleting[key]
	fsys.later.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// waitDeletes waits for the deletes in flight of old names below prefix.
func (fsys *filesystem) waitDeletes(ctx context.Context, prefix string) error {
	l := fsys.later
	l.mu.Lock()
	var waits []chan struct{}
	for key, done := range l.deleting {
		if strings.HasPrefix(key, prefix) {
			waits = append(waits, done)
		}
	}
	l.mu.Unlock()
	for _, done := range waits {
		select {
		case <-done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// awaitDeletes waits for the deletes in flight of old names below prefix,
// tries those that failed once more, and reports the ones that fail again.
func (fsys *filesystem) awaitDeletes(ctx context.Context, prefix string) error {
	if err := fsys.waitDeletes(ctx, prefix); err != nil {
		return err
	}
	return fsys.retryDeletes(ctx, prefix)
}

// finishDeletes waits for the deletes in flight and tries the failed ones
// again, returning one error naming each old name still there. A delete
// that replaced an earlier one of the same name waits for it, so waiting
// for the ones deleting lists covers all.
func (fsys *filesystem) finishDeletes(ctx context.Context) error {
	if err := fsys.waitDeletes(ctx, ""); err != nil {
		return fmt.Errorf("deletes of renamed files' old names still in flight: %w", err)
	}
	return fsys.retryDeletes(ctx, "")
}

// retryDeletes tries the failed deletes of old names below prefix again,
// each checking first, with a HEAD, that the name still holds the version
// copied (a name this mount or another client stored again is kept), and
// reports those that fail again.
func (fsys *filesystem) retryDeletes(ctx context.Context, prefix string) error {
	l := fsys.later
	l.mu.Lock()
	keys := make([]string, 0, len(l.failedDeletes))
	etags := make(map[string]string, len(l.failedDeletes))
	for k, fd := range l.failedDeletes {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
			etags[k] = fd.etag
		}
	}
	l.mu.Unlock()
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		err := fsys.deleteVersion(ctx, key, etags[key], true)
		fsys.changed(key)
		l.mu.Lock()
		if err == nil {
			delete(l.failedDeletes, key)
		}
		l.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %q (the old name of a renamed file, which still holds a copy of it): %w", key, err))
		}
	}
	return errors.Join(errs...)
}

// storedAgain forgets a failed delete of key, which this mount stored
// again: that version is not the renamed file's.
func (fsys *filesystem) storedAgain(key string) {
	fsys.later.mu.Lock()
	delete(fsys.later.failedDeletes, key)
	fsys.later.mu.Unlock()
}
