package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

// metaObject is what a symbolic link and a special file share: a node that
// is one object whose metadata are its attributes. The node types embed it
// and add what is theirs (a link's target).
type metaObject struct {
	fsys *filesystem
	typ  uint32 // S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK; fixed

	mu     sync.Mutex
	key    string       // changes on rename; guarded by mu
	obj    store.Object // the stored object as last seen; guarded by mu
	statAt time.Time    // when obj was last confirmed; guarded by mu
	attrs  attrs        // guarded by mu
}

func (m *metaObject) keyNow() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.key
}

// setObjectLocked records obj as the stored object and reports whether it
// is another version than the one known. An answer about a key the node no
// longer has (a rename ran meanwhile) is ignored.
func (m *metaObject) setObjectLocked(obj store.Object) (newVersion, ok bool) {
	if obj.Key != m.key {
		return false, false
	}
	newVersion = obj.ETag != m.obj.ETag
	m.obj, m.statAt = obj, time.Now()
	m.attrs = defaultFileAttrs(m.fsys, obj.LastModified).withMetadata(obj.Metadata).since(m.attrs)
	return newVersion, true
}

// moved re-points the node at key after a rename copied it there as obj
// (the same bytes).
func (m *metaObject) moved(key string, obj store.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.key = key
	if obj.ETag == "" {
		m.obj.Key, m.statAt = key, time.Time{}
		return
	}
	if obj.Metadata == nil {
		obj.Metadata = m.obj.Metadata
	}
	m.obj, m.statAt = obj, time.Now()
	m.attrs.ctime = now()
}

func (m *metaObject) fill(out *fuse.Attr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size := m.obj.Size
	if m.typ != syscall.S_IFLNK {
		size = 0 // a special file has no bytes of its own
	}
	m.attrs.fill(out, m.typ, size)
}

// getattr asks S3 again once the attribute timeout has passed, as for
// files, handing a fresh answer to setObject (the node's own).
func (m *metaObject) getattr(ctx context.Context, setObject func(store.Object), out *fuse.AttrOut) syscall.Errno {
	m.mu.Lock()
	refresh := time.Since(m.statAt) >= m.fsys.opts.AttrTimeout
	key := m.key
	m.mu.Unlock()
	if refresh {
		obj, err := m.fsys.stat(ctx, key)
		if err != nil {
			return m.fsys.toErrno("getattr", key, err)
		}
		setObject(obj)
	}
	m.fill(&out.Attr)
	return 0
}
