package meta

import (
	"strings"

	"github.com/partfs/partfs/store"
)

// invalidation is one call of Invalidate (a key) or InvalidateDir (a
// prefix, dir true), numbered by gen.
type invalidation struct {
	gen uint64
	key string
	dir bool
}

// Invalidate forgets what is known of key, also in the listings of its
// directory and of the directories above it, which go on answering for
// their other names. The fs layer calls it after every change it makes to
// key through the store: Put, CompleteMultipart, Copy onto it, Delete, and
// a marker's Put. For a marker key ("dir/"), the listing of that directory
// is forgotten too. Probes that found a directory above key empty
// (FindDir) are forgotten, and so is one of the marker's own directory.
func (m *Cache) Invalidate(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalidateLocked(key)
}

func (m *Cache) invalidateLocked(key string) {
	m.recordLocked(invalidation{key: key})
	if e, ok := m.stats[key]; ok {
		m.removeStatLocked(e)
	}
	// Every listing on the way up lists key or a directory it lies in.
	for child := key; child != ""; child = parent(child) {
		m.changedInDirLocked(parent(child), child)
	}
	if strings.HasSuffix(key, "/") {
		m.removeDirLocked(key)
	}
	m.changedAbsentLocked(key)
}

// InvalidateDir forgets everything known under prefix (which ends in "/"):
// the Stat results and listings of every key and directory below it, and
// the listing of its parent, and the empty probes of prefix, of every
// directory below it and above it. The fs layer calls it after renaming or
// removing a directory.
func (m *Cache) InvalidateDir(prefix string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recordLocked(invalidation{key: prefix, dir: true})
	for k, e := range m.stats {
		if strings.HasPrefix(k, prefix) {
			m.removeStatLocked(e)
		}
	}
	for p := range m.dirs {
		if strings.HasPrefix(p, prefix) {
			m.removeDirLocked(p)
		}
	}
	m.removeDirLocked(parent(prefix))
	m.changedAbsentDirLocked(prefix)
}

// Update records obj as the current state of obj.Key, as this mount just
// wrote it, so that the next Stat within StatTTL needs no request: the
// Object returned by Put, CompleteMultipart or Copy, with Metadata set to
// the user metadata sent (nil for none). Such an Object's LastModified is
// the server's clock at the reply, which may be a second off the stored
// value; a later listing then does not recognize the version and one HEAD
// settles it. Update invalidates first, like Invalidate.
func (m *Cache) Update(obj store.Object) {
	if obj.Metadata == nil {
		obj.Metadata = store.Metadata{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalidateLocked(obj.Key)
	m.putStatLocked(&statEntry{key: obj.Key, obj: obj, expires: m.now().Add(m.statTTL)})
}

// Removed records that this mount just deleted key, so that a Stat within
// NegativeTTL answers "no such key" without a request. It invalidates
// first, like Invalidate.
func (m *Cache) Removed(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalidateLocked(key)
	m.putStatLocked(&statEntry{key: key, missing: true, expires: m.now().Add(m.negativeTTL)})
}

// CreatedDir records that this mount just created the directory whose
// marker is marker (a Put of "dir/" where nothing was under that prefix):
// its listing is known to hold the marker alone, so lookups of names in it
// are answered for ListTTL without a request, as from a fresh listing, and
// this mount's changes there mark their names. It invalidates first, like
// Invalidate.
func (m *Cache) CreatedDir(marker store.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invalidateLocked(marker.Key)
	now := m.now()
	if marker.Metadata != nil && marker.ETag != "" {
		// The marker's metadata are those just written, as for Update.
		m.putStatLocked(&statEntry{key: marker.Key, obj: marker, expires: now.Add(m.statTTL)})
	}
	listed := marker
	listed.Metadata = nil
	l := &Listing{Prefix: marker.Key, Objects: []store.Object{listed}}
	m.putDirLocked(&dirEntry{prefix: marker.Key, l: l, taken: now, expires: now.Add(m.listTTL)})
}

// recordLocked numbers an invalidation and keeps it for the requests in
// flight, which must not cache what they learned before it.
func (m *Cache) recordLocked(inv invalidation) {
	m.gen++
	if len(m.flying) == 0 {
		return
	}
	inv.gen = m.gen
	if len(m.invals) >= maxInvalidations {
		half := len(m.invals) / 2
		m.lost = m.invals[half-1].gen
		m.invals = append(m.invals[:0], m.invals[half:]...)
	}
	m.invals = append(m.invals, inv)
}

// beginLocked registers a request in flight and returns its generation.
func (m *Cache) beginLocked() uint64 {
	m.flying[m.gen]++
	return m.gen
}

// endLocked ends a request begun in generation g and reports whether its
// answer may be cached: no invalidation since g covers what it asked.
func (m *Cache) endLocked(g uint64, covers func(invalidation) bool) bool {
	keep := g >= m.lost
	for _, inv := range m.invals {
		if inv.gen > g && covers(inv) {
			keep = false
			break
		}
	}
	if m.flying[g]--; m.flying[g] == 0 {
		delete(m.flying, g)
	}
	if len(m.flying) == 0 {
		m.invals = m.invals[:0]
		return keep
	}
	oldest := m.gen
	for f := range m.flying {
		oldest = min(oldest, f)
	}
	n := 0
	for n < len(m.invals) && m.invals[n].gen <= oldest {
		n++
	}
	m.invals = append(m.invals[:0], m.invals[n:]...)
	return keep
}

// coversKey reports whether inv makes a Stat of key begun before it stale.
func (inv invalidation) coversKey(key string) bool {
	if inv.dir {
		return strings.HasPrefix(key, inv.key)
	}
	return inv.key == key
}
