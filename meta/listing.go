package meta

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/partfs/partfs/store"
)

// Listing is one level of a directory as S3 lists it with the delimiter "/".
// A Listing returned by a Cache is shared: callers must not modify it.
type Listing struct {
	// Prefix is the directory: "" for the top of the bucket, otherwise
	// ending in "/".
	Prefix string
	// Objects are the objects directly under Prefix in key order, the
	// directory's own marker (Prefix itself) included when it exists.
	// Metadata is nil unless the metadata of that exact version is known.
	Objects []store.Object
	// Prefixes are the subdirectories, full prefixes ending in "/", in key
	// order. A subdirectory's marker object is folded into its prefix.
	Prefixes []string
	// Next is empty when the listing is complete. Otherwise the directory
	// has more than Options.MaxListed entries; the listing holds the first
	// ones and the caller continues with store.Store.List from this token.
	// Incomplete listings are not cached.
	Next string
}

// Object returns the listed object with the given key.
func (l *Listing) Object(key string) (store.Object, bool) {
	i, ok := slices.BinarySearchFunc(l.Objects, key, func(o store.Object, k string) int {
		return strings.Compare(o.Key, k)
	})
	if !ok {
		return store.Object{}, false
	}
	return l.Objects[i], true
}

// Subdir reports whether prefix (ending in "/") is listed as a subdirectory.
func (l *Listing) Subdir(prefix string) bool {
	_, ok := slices.BinarySearch(l.Prefixes, prefix)
	return ok
}

// ReadDir returns the listing of the directory prefix ("" or ending in
// "/"), every page of it up to Options.MaxListed entries, from memory when a
// listing younger than ListTTL is at hand.
func (m *Cache) ReadDir(ctx context.Context, prefix string) (*Listing, error) {
	m.mu.Lock()
	d := m.freshDirLocked(prefix, m.now())
	gen := m.gen
	m.mu.Unlock()
	if d != nil && len(d.changed) == 0 {
		return d.l, nil
	}
	v, err := m.do(ctx, "list "+strconv.FormatUint(gen, 10)+" "+prefix, func(ctx context.Context) (any, error) {
		return m.list(ctx, prefix, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list %q: %w", prefix, err)
	}
	return v.(*Listing), nil
}

// list lists prefix from the store, at most maxPages pages (0: up to
// MaxListed entries), and caches the listing when it is complete. Keys this
// mount changed while the request was in flight are marked as changed in
// the cached listing, which then says nothing about them.
func (m *Cache) list(ctx context.Context, prefix string, maxPages int) (*Listing, error) {
	m.mu.Lock()
	g := m.beginLocked()
	m.mu.Unlock()
	start := m.now()
	l, err := m.listAll(ctx, prefix, maxPages)

	m.mu.Lock()
	defer m.mu.Unlock()
	// The invalidations since g decide what the listing may still say, so
	// they are read before endLocked forgets them; endLocked then only
	// unregisters the request (its own verdict would drop the listing at
	// the first change of any entry, which changesSinceLocked marks instead).
	changed, keep := m.changesSinceLocked(g, prefix)
	m.endLocked(g, func(invalidation) bool { return false })
	if err != nil {
		return nil, err
	}
	for i, o := range l.Objects {
		if md, ok := m.knownVersionLocked(o); ok {
			l.Objects[i].Metadata = md
		}
	}
	switch {
	case l.Next != "" && maxPages > 0:
		m.largeDirLocked(prefix, start)
	case keep && l.Next == "":
		m.putDirLocked(&dirEntry{prefix: prefix, l: l, taken: start, expires: start.Add(m.listTTL), changed: changed})
	}
	return l, nil
}

// listAll reads the pages of prefix's listing until the end, MaxListed
// entries or maxPages pages (0: no limit).
func (m *Cache) listAll(ctx context.Context, prefix string, maxPages int) (*Listing, error) {
	l := &Listing{Prefix: prefix}
	for pages := 1; ; pages++ {
		// Ask for no more than MaxListed in all; 0 is the server's page
		// size (1,000 on S3).
		room := m.maxListed - len(l.Objects) - len(l.Prefixes)
		if room >= 1000 {
			room = 0
		}
		page, err := m.st.List(ctx, prefix, "/", l.Next, room)
		if err != nil {
			return nil, err
		}
		l.Objects = append(l.Objects, page.Objects...)
		l.Prefixes = append(l.Prefixes, page.Prefixes...)
		l.Next = page.Next
		if l.Next == "" || len(l.Objects)+len(l.Prefixes) >= m.maxListed || pages == maxPages {
			break
		}
	}
	for i := range l.Objects {
		l.Objects[i].Metadata = nil // listings carry none; make sure of it
	}
	// S3 lists in key order; binary searches rely on it, so make sure.
	cmp := func(a, b store.Object) int { return strings.Compare(a.Key, b.Key) }
	if !slices.IsSortedFunc(l.Objects, cmp) {
		slices.SortFunc(l.Objects, cmp)
	}
	if !slices.IsSorted(l.Prefixes) {
		slices.Sort(l.Prefixes)
	}
	return l, nil
}

// freshDirLocked returns the cached listing of prefix if it is younger
// than ListTTL.
func (m *Cache) freshDirLocked(prefix string, now time.Time) *dirEntry {
	e, ok := m.dirs[prefix]
	if !ok {
		return nil
	}
	d := e.Value.(*dirEntry)
	if !now.Before(d.expires) {
		m.removeDirLocked(prefix)
		return nil
	}
	m.dirLRU.MoveToFront(e)
	return d
}

func (m *Cache) putDirLocked(d *dirEntry) {
	n := d.entries()
	if n > m.maxListed {
		return
	}
	m.removeDirLocked(d.prefix)
	m.dirs[d.prefix] = m.dirLRU.PushFront(d)
	m.listed += n
	m.trimDirsLocked()
}

// trimDirsLocked drops the least recently used listings until the cached
// entries fit in MaxListed.
func (m *Cache) trimDirsLocked() {
	for m.listed > m.maxListed {
		m.removeDirLocked(m.dirLRU.Back().Value.(*dirEntry).prefix)
	}
}

func (m *Cache) removeDirLocked(prefix string) {
	e, ok := m.dirs[prefix]
	if !ok {
		return
	}
	m.listed -= e.Value.(*dirEntry).entries()
	delete(m.dirs, prefix)
	m.dirLRU.Remove(e)
}

// changedInDirLocked records that this mount changed key, which is listed
// in the directory prefix (as an object, or as the subdirectory it lies
// in): the cached listing of prefix, if any, no longer speaks for it.
func (m *Cache) changedInDirLocked(prefix, key string) {
	e, ok := m.dirs[prefix]
	if !ok {
		return
	}
	d := e.Value.(*dirEntry)
	if d.changed[key] {
		return
	}
	if len(d.changed) >= maxChangedPerListing {
		m.removeDirLocked(prefix)
		return
	}
	if d.changed == nil {
		d.changed = make(map[string]bool)
	}
	d.changed[key] = true
	m.listed++
	m.trimDirsLocked()
}

// changesSinceLocked returns, for a listing of prefix begun in generation
// g, the entries of prefix that invalidations since then changed; keep is
// false when one of them makes the whole listing stale (the directory
// itself changed, or invalidations were lost).
func (m *Cache) changesSinceLocked(g uint64, prefix string) (changed map[string]bool, keep bool) {
	if g < m.lost {
		return nil, false
	}
	for _, inv := range m.invals {
		below := strings.HasPrefix(inv.key, prefix)
		switch {
		case inv.gen <= g:
		case inv.key == prefix || (inv.dir && (below || strings.HasPrefix(prefix, inv.key))):
			return nil, false
		case below:
			if changed == nil {
				changed = make(map[string]bool)
			}
			changed[childOf(prefix, inv.key)] = true
		}
	}
	return changed, true
}
