package fs

import (
	"strings"
	"sync"
	"time"
)

// maxAbsentDirs bounds the prefixes absentDirs remembers; past it, expired
// ones are dropped, and if none has expired, all of them.
const maxAbsentDirs = 10000

// absentDirs remembers, for NegativeTTL, the prefixes under which a lookup's
// one-key listing found nothing. A lookup of a missing name costs a HEAD of
// "name", which cache.Meta remembers, and a listing of "name/" to rule out
// a directory without a marker, which Meta has no place for: this is that
// place, so that a repeated lookup of a missing name costs no request.
//
// Every change this mount makes drops the prefixes it may fill (the key's
// ancestors), and a probe that was in flight while any change was made is
// not remembered at all, so that a name this mount creates is never hidden.
type absentDirs struct {
	ttl time.Duration // 0: nothing is remembered
	now func() time.Time

	mu      sync.Mutex
	gen     uint64               // guarded by mu; counts changes
	expires map[string]time.Time // guarded by mu; prefix -> end of belief
}

func newAbsentDirs(ttl time.Duration, now func() time.Time) *absentDirs {
	return &absentDirs{ttl: ttl, now: now, expires: make(map[string]time.Time)}
}

// begin is called before a probe is sent; its result goes to remember.
func (a *absentDirs) begin() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}

// isAbsent reports whether prefix was found empty within the TTL.
func (a *absentDirs) isAbsent(prefix string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.expires[prefix]
	if ok && !a.now().Before(exp) {
		delete(a.expires, prefix)
		ok = false
	}
	return ok
}

// remember records that a probe begun at gen (begin) found prefix empty,
// unless this mount changed anything since.
func (a *absentDirs) remember(prefix string, gen uint64) {
	if a.ttl <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	now := a.now()
	if len(a.expires) >= maxAbsentDirs {
		for p, exp := range a.expires {
			if !now.Before(exp) {
				delete(a.expires, p)
			}
		}
		if len(a.expires) >= maxAbsentDirs {
			clear(a.expires)
		}
	}
	a.expires[prefix] = now.Add(a.ttl)
}

// changed forgets the prefixes that key (an object, or a marker ending in
// "/") lies under, itself included for a marker.
func (a *absentDirs) changed(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	if strings.HasSuffix(key, "/") {
		delete(a.expires, key)
	}
	a.forgetAncestorsLocked(key)
}

// changedDir forgets prefix, every prefix below it and its ancestors.
func (a *absentDirs) changedDir(prefix string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	for p := range a.expires {
		if strings.HasPrefix(p, prefix) {
			delete(a.expires, p)
		}
	}
	a.forgetAncestorsLocked(prefix)
}

// forgetAncestorsLocked forgets every directory prefix above key.
func (a *absentDirs) forgetAncestorsLocked(key string) {
	k := strings.TrimSuffix(key, "/")
	for {
		i := strings.LastIndex(k, "/")
		if i < 0 {
			return
		}
		k = k[:i]
		delete(a.expires, k+"/")
	}
}
