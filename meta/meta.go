// Package meta remembers, for a short while, what the bucket said about keys
// and directories, so that the fs layer's lookups, stats and listings do not
// each cost a request: Stat results (with user metadata) for StatTTL, "no
// such key" for NegativeTTL, listings of one directory level for ListTTL,
// and, for NegativeTTL, the directory probes of lookups that found nothing
// (FindDir). One Cache serves one mount.
//
// # Use from the fs layer
//
//	m := meta.New(st, opts)
//
//	obj, err := m.Stat(ctx, key)                // LOOKUP, GETATTR, and OPEN (close-to-open)
//	found, marker, err := m.FindDir(ctx, p)     // LOOKUP of a name that is no object: a directory?
//	l, err := m.ReadDir(ctx, prefix)            // READDIR (l.Next != "": continue with st.List)
//
//	m.Update(obj)             // after this mount's Put/CompleteMultipart/Copy of obj.Key
//	m.Invalidate(key)         // after a Delete of key, or any change whose result is unknown
//	m.InvalidateDir(prefix)   // after renaming or removing a directory
//
// # Locks
//
// Cache.mu guards everything and is a leaf: no store call is made and no
// flight is waited for while it is held.
package meta

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/partfs/partfs/store"
)

const (
	// The TTLs default to one second. That is Mountpoint for Amazon S3's
	// default without a data cache; goofys and geesefs default to a minute.
	// partfs promises close-to-open consistency, so another client's change
	// should show within about the time a person or a script takes between
	// two commands, while one command's burst of lookups of the same names
	// (ls -l, cp -r, a shell's PATH search, an editor probing for swap
	// files) is still answered from memory. The kernel's own attribute and
	// entry timeouts (set by the fs layer) add to these.
	defaultStatTTL     = time.Second
	defaultNegativeTTL = time.Second
	defaultListTTL     = time.Second
	// A Stat result costs a few hundred bytes (key, ETag, a small metadata
	// map), a listed object somewhat less: 50,000 results and 100,000 listed
	// entries stay within a few tens of MiB.
	defaultMaxStats  = 50000
	defaultMaxListed = 100000
	// maxInvalidations bounds the invalidations remembered for requests in
	// flight; past it, results of the oldest requests are not cached.
	maxInvalidations = 4096
)

// Options configures a Cache. Zero values get defaults in New.
type Options struct {
	// StatTTL is how long a Stat result is believed; default 1s.
	StatTTL time.Duration
	// NegativeTTL is how long "no such key", and a directory probe that
	// found nothing, are believed; default 1s.
	NegativeTTL time.Duration
	// ListTTL is how long a directory listing is believed; default 1s.
	ListTTL time.Duration
	// A negative TTL believes nothing: every answer of that kind has
	// expired by the time it could be used again (the TTL is one
	// nanosecond), and no probe is remembered.

	// MaxStats bounds the Stat results kept, fresh or expired; default 50,000.
	MaxStats int
	// MaxListed bounds the entries of all cached listings together; default
	// 100,000. ReadDir returns at most this many entries of one directory.
	MaxListed int
	// Now is the clock for TTLs; default time.Now.
	Now func() time.Time
	// Logger receives what has no caller to go to; nil discards.
	Logger *slog.Logger
}

// Cache holds what the bucket said about keys: Stat results (with user
// metadata) for StatTTL, "no such key" for NegativeTTL, and listings of one
// directory level for ListTTL. It is safe for concurrent use.
//
// # Consistency
//
// Answers may be up to a TTL old for changes made by other clients. Changes
// made through this mount are seen at once, provided the fs layer calls
// Invalidate, InvalidateDir or Update right after making them (after the
// store call returns): a request that was in flight while the change was
// made does not get its answer cached, and callers arriving after the
// change do not share it.
//
// # Listings and metadata
//
// S3 listings carry each object's size, ETag and LastModified but no user
// metadata, so the mode, owner and mtime that partfs keeps there need a HEAD
// (Stat). The Cache therefore remembers Stat results past their TTL, up to
// MaxStats of them, as knowledge of a version: when a fresh listing shows an
// object with the same ETag, size and LastModified (to the second, which is
// all a HEAD reports), its metadata is known without a HEAD. ReadDir fills
// Metadata in for such objects and leaves it nil for the others; Stat
// answers from the listing when it can. A fresh listing also answers
// lookups of names it does not contain (negative lookups) without a
// request.
//
// Concurrent requests for the same key or directory are one request; it
// runs detached from the callers' contexts (bounded by the store's own
// timeouts), and a caller whose context ends stops waiting for it.
type Cache struct {
	st          store.Store
	statTTL     time.Duration
	negativeTTL time.Duration
	listTTL     time.Duration
	probeTTL    time.Duration // NegativeTTL for FindDir's probes; 0: none is remembered
	maxStats    int
	maxListed   int
	now         func() time.Time
	log         *slog.Logger
	flights     singleflight.Group
	// waiting counts callers registered with a flight and not yet answered.
	waiting atomic.Int64

	mu      sync.Mutex
	stats   map[string]*list.Element // guarded by mu; *statEntry, in statLRU
	statLRU *list.List               // guarded by mu; most recently used first
	dirs    map[string]*list.Element // guarded by mu; *dirEntry, in dirLRU
	dirLRU  *list.List               // guarded by mu; most recently used first
	listed  int                      // guarded by mu; entries in cached listings
	gen     uint64                   // guarded by mu; counts invalidations
	invals  []invalidation           // guarded by mu; newer than the oldest request in flight
	lost    uint64                   // guarded by mu; requests begun before this may have missed invalidations
	flying  map[uint64]int           // guarded by mu; requests in flight by the gen they began in
	bursts  map[string]*burst        // guarded by mu; by directory prefix (burst.go)
	absent  map[string]time.Time     // guarded by mu; prefix a probe found empty -> end of belief (absent.go)
}

type statEntry struct {
	key     string
	obj     store.Object // Metadata non-nil
	missing bool         // the key did not exist
	expires time.Time
}

type dirEntry struct {
	prefix  string
	l       *Listing
	taken   time.Time // when the listing was asked for
	expires time.Time
	// changed holds the entries (object keys, or subdirectory prefixes)
	// that this mount changed since the listing was taken: the listing no
	// longer speaks for them. It still answers for the other names, but
	// ReadDir lists again.
	changed map[string]bool
}

// entries counts what d holds against MaxListed.
func (d *dirEntry) entries() int { return len(d.l.Objects) + len(d.l.Prefixes) + len(d.changed) }

// New returns a Cache in front of st.
func New(st store.Store, opts Options) *Cache {
	ttl := func(d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < 0:
			return time.Nanosecond
		}
		return d
	}
	if opts.MaxStats <= 0 {
		opts.MaxStats = defaultMaxStats
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = defaultMaxListed
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Cache{
		st:          st,
		statTTL:     ttl(opts.StatTTL, defaultStatTTL),
		negativeTTL: ttl(opts.NegativeTTL, defaultNegativeTTL),
		listTTL:     ttl(opts.ListTTL, defaultListTTL),
		maxStats:    opts.MaxStats,
		maxListed:   opts.MaxListed,
		now:         opts.Now,
		log:         opts.Logger,
		stats:       make(map[string]*list.Element),
		statLRU:     list.New(),
		dirs:        make(map[string]*list.Element),
		dirLRU:      list.New(),
		flying:      make(map[uint64]int),
		bursts:      make(map[string]*burst),
		absent:      make(map[string]time.Time),
	}
	if opts.NegativeTTL >= 0 {
		m.probeTTL = m.negativeTTL
	}
	return m
}

// Stat returns key's object with its metadata (never nil, empty when the
// object has none), like store.Store.Stat, from memory when it can. A
// missing key is store.ErrNotExist. The Metadata map is shared: callers
// must not modify it.
func (m *Cache) Stat(ctx context.Context, key string) (store.Object, error) {
	obj, found, burst, err := m.cached(key)
	if !found && burst {
		m.listFirstPage(ctx, parent(key))
		obj, found, _, err = m.cached(key)
	}
	if found {
		return obj, err
	}
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	v, err := m.do(ctx, "stat "+strconv.FormatUint(gen, 10)+" "+key, func(ctx context.Context) (any, error) {
		return m.stat(ctx, key)
	})
	if err != nil {
		return store.Object{}, fmt.Errorf("meta: stat %q: %w", key, err)
	}
	return v.(store.Object), nil
}

// cached answers a Stat of key from memory when it can (found), noting a
// miss for bursts (burst.go); burst reports whether the directory is in a
// burst of misses, so that listing it may answer where memory cannot.
func (m *Cache) cached(key string) (obj store.Object, found, burst bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	obj, found, err = m.cachedStatLocked(key, now)
	if found && err != nil {
		m.missedLocked(key, now)
	}
	return obj, found, !found && m.inBurstLocked(key, now), err
}

// cachedStatLocked answers a Stat of key from a fresh Stat result or a
// fresh listing of its directory; found is false when it cannot.
func (m *Cache) cachedStatLocked(key string, now time.Time) (obj store.Object, found bool, err error) {
	e, known := m.stats[key]
	var se *statEntry
	if known {
		se = e.Value.(*statEntry)
		switch {
		case now.Before(se.expires):
			m.statLRU.MoveToFront(e)
			if se.missing {
				return store.Object{}, true, notExist(key)
			}
			return se.obj, true, nil
		case se.missing:
			m.removeStatLocked(e) // an old "no such key" is worth nothing
			se = nil
		}
	}
	if key == "" {
		return store.Object{}, false, nil
	}
	d := m.freshDirLocked(parent(key), now)
	if d == nil || d.l.Next != "" || d.changed[key] {
		return store.Object{}, false, nil
	}
	// A name a listing lacks is believed missing for NegativeTTL from when
	// the listing was asked for.
	absent := now.Before(d.taken.Add(m.negativeTTL))
	if strings.HasSuffix(key, "/") {
		// A marker object is folded into its directory's common prefix, so
		// the listing only tells when there is neither marker nor content.
		if !d.l.Subdir(key) && absent {
			return store.Object{}, true, notExist(key)
		}
		return store.Object{}, false, nil
	}
	listed, ok := d.l.Object(key)
	switch {
	case !ok && !absent:
		return store.Object{}, false, nil
	case !ok:
		return store.Object{}, true, notExist(key)
	case se != nil && sameVersion(se.obj, listed):
		listed.Metadata = se.obj.Metadata
	case listed.Metadata == nil:
		return store.Object{}, false, nil
	}
	// The listing shows a version whose metadata is known: as fresh as the
	// listing.
	m.putStatLocked(&statEntry{key: key, obj: listed, expires: d.expires})
	return listed, true, nil
}

// stat sends one Stat and caches its answer.
func (m *Cache) stat(ctx context.Context, key string) (store.Object, error) {
	m.mu.Lock()
	g := m.beginLocked()
	m.mu.Unlock()
	start := m.now()
	obj, err := m.st.Stat(ctx, key)

	m.mu.Lock()
	defer m.mu.Unlock()
	keep := m.endLocked(g, func(inv invalidation) bool { return inv.coversKey(key) })
	switch {
	case err == nil:
		if obj.Metadata == nil {
			obj.Metadata = store.Metadata{}
		}
		if keep {
			m.putStatLocked(&statEntry{key: key, obj: obj, expires: start.Add(m.statTTL)})
		}
		return obj, nil
	case errors.Is(err, store.ErrNotExist):
		m.missedLocked(key, m.now())
		if keep {
			m.putStatLocked(&statEntry{key: key, missing: true, expires: start.Add(m.negativeTTL)})
		}
	}
	return store.Object{}, err
}

// do runs fn once for all concurrent callers with the same flight name,
// under a context that callers giving up do not cancel.
func (m *Cache) do(ctx context.Context, name string, fn func(context.Context) (any, error)) (any, error) {
	ch := m.flights.DoChan(name, func() (any, error) {
		return fn(context.WithoutCancel(ctx))
	})
	m.waiting.Add(1)
	defer m.waiting.Add(-1)
	select {
	case res := <-ch:
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (m *Cache) putStatLocked(se *statEntry) {
	if e, ok := m.stats[se.key]; ok {
		e.Value = se
		m.statLRU.MoveToFront(e)
		return
	}
	m.stats[se.key] = m.statLRU.PushFront(se)
	for m.statLRU.Len() > m.maxStats {
		m.removeStatLocked(m.statLRU.Back())
	}
}

func (m *Cache) removeStatLocked(e *list.Element) {
	delete(m.stats, e.Value.(*statEntry).key)
	m.statLRU.Remove(e)
}

// knownVersionLocked returns the metadata of obj's version if a Stat
// result, fresh or not, is of that version.
func (m *Cache) knownVersionLocked(obj store.Object) (store.Metadata, bool) {
	e, ok := m.stats[obj.Key]
	if !ok {
		return nil, false
	}
	se := e.Value.(*statEntry)
	if se.missing || !sameVersion(se.obj, obj) {
		return nil, false
	}
	return se.obj.Metadata, true
}

// sameVersion reports whether a and b describe one version of an object.
// LastModified is compared to the second because that is all a HEAD
// reports, while listings may give milliseconds.
func sameVersion(a, b store.Object) bool {
	return a.ETag != "" && a.ETag == b.ETag && a.Size == b.Size &&
		a.LastModified.Unix() == b.LastModified.Unix()
}

// parent returns the directory prefix holding key: "a/b/" for "a/b/c" and
// for the marker "a/b/c/", "" at the top.
func parent(key string) string {
	k := strings.TrimSuffix(key, "/")
	return k[:strings.LastIndex(k, "/")+1]
}

func notExist(key string) error {
	return fmt.Errorf("meta: stat %q: %w", key, store.ErrNotExist)
}
