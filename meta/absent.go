package meta

import (
	"context"
	"fmt"
	"strings"

	"github.com/partfs/partfs/store"
)

// maxAbsentDirs bounds the probes remembered as empty; past it, expired
// ones are dropped, and if none has expired, all of them.
const maxAbsentDirs = 10000

// FindDir reports whether a directory prefix (ending in "/") exists: an
// object "name/" (the marker, which keeps an empty directory alive) or any
// key under it. marker reports whether the first key under it is the
// marker itself, whose metadata the caller may then read with Stat.
//
// A lookup of a missing name costs a HEAD of "name", which Stat remembers,
// and this probe, a listing of "name/" with a page size of one, to rule out
// a directory without a marker: an empty answer is remembered for
// NegativeTTL, so that a repeated lookup of a missing name costs no
// request. A fresh listing of the parent that lacks prefix answers without
// a request too (see burst.go). Every change this mount announces forgets
// the probes it may fill (the key's ancestors), and a probe that was in
// flight while any change was announced is not remembered at all, so that
// a name this mount creates is never hidden.
//
// The probe runs under ctx and is not shared with other callers.
func (m *Cache) FindDir(ctx context.Context, prefix string) (found, marker bool, err error) {
	if m.dirAbsent(prefix) {
		return false, false, nil
	}
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	page, err := m.st.List(ctx, prefix, "/", "", 1)
	if err != nil {
		return false, false, fmt.Errorf("meta: probe %q: %w", prefix, err)
	}
	if len(page.Objects) == 0 && len(page.Prefixes) == 0 {
		m.rememberAbsent(prefix, gen)
		return false, false, nil
	}
	// The marker is the first key under its own prefix.
	marker = len(page.Objects) > 0 && page.Objects[0].Key == prefix
	if marker {
		m.listedMarker(page.Objects[0])
	}
	return true, marker, nil
}

// listedMarker takes a marker object a probe listed: when a Stat result of
// that version is remembered, its metadata are known, and a Stat of the
// marker within StatTTL needs no request (as for listed objects, see
// cachedStatLocked). Only the version is trusted, not the moment: a
// marker this mount rewrote meanwhile is another version.
func (m *Cache) listedMarker(obj store.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	md, ok := m.knownVersionLocked(obj)
	if !ok {
		return
	}
	obj.Metadata = md
	m.putStatLocked(&statEntry{key: obj.Key, obj: obj, expires: m.now().Add(m.statTTL)})
}

// dirAbsent reports whether the directory prefix (ending in "/") is known
// to have neither a marker nor anything under it: a probe found it empty
// within NegativeTTL, or a fresh listing of its parent lacks it. It sends
// no request.
func (m *Cache) dirAbsent(prefix string) bool {
	if !strings.HasSuffix(prefix, "/") {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if exp, ok := m.absent[prefix]; ok {
		if now.Before(exp) {
			return true
		}
		delete(m.absent, prefix)
	}
	d := m.freshDirLocked(parent(prefix), now)
	return d != nil && d.l.Next == "" && !d.changed[prefix] &&
		now.Before(d.taken.Add(m.negativeTTL)) && !d.l.Subdir(prefix)
}

// rememberAbsent records that a probe begun in generation gen found prefix
// empty, unless this mount announced a change since.
func (m *Cache) rememberAbsent(prefix string, gen uint64) {
	if m.probeTTL <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if gen != m.gen {
		return
	}
	now := m.now()
	if len(m.absent) >= maxAbsentDirs {
		for p, exp := range m.absent {
			if !now.Before(exp) {
				delete(m.absent, p)
			}
		}
		if len(m.absent) >= maxAbsentDirs {
			clear(m.absent)
		}
	}
	m.absent[prefix] = now.Add(m.probeTTL)
}

// changedAbsentLocked forgets the probes that key (an object, or a marker
// ending in "/") lies under, its own for a marker.
func (m *Cache) changedAbsentLocked(key string) {
	if strings.HasSuffix(key, "/") {
		delete(m.absent, key)
	}
	m.forgetAbsentAboveLocked(key)
}

// changedAbsentDirLocked forgets the probes of prefix, of every prefix
// below it and of its ancestors.
func (m *Cache) changedAbsentDirLocked(prefix string) {
	for p := range m.absent {
		if strings.HasPrefix(p, prefix) {
			delete(m.absent, p)
		}
	}
	m.forgetAbsentAboveLocked(prefix)
}

// forgetAbsentAboveLocked forgets the probes of every directory above key.
func (m *Cache) forgetAbsentAboveLocked(key string) {
	for p := parent(key); p != ""; p = parent(p) {
		delete(m.absent, p)
	}
}
