package meta

import (
	"context"
	"strconv"
	"strings"
	"time"
)

const (
	// maxBursts bounds the directories whose recent misses a Cache remembers.
	maxBursts = 1024
	// maxChangedPerListing bounds the entries one cached listing marks as
	// changed by this mount; past it the listing is dropped.
	maxChangedPerListing = 1000
	// minBurstTTL is the shortest ListTTL and NegativeTTL for which a burst
	// is worth a listing: below it the listing would expire before it
	// answered anything.
	minBurstTTL = 100 * time.Millisecond
	// burstMemory is how many NegativeTTLs after its last miss a burst
	// still lists its directory at the next miss: rsync comes back to a
	// directory seconds after it looked its names up (its generator runs
	// ahead of its receiver), and one listing then answers what a HEAD
	// and a directory probe per name would.
	burstMemory = 10
)

// A burst is a run of lookups of names that do not exist in one directory:
// cp -r, rsync, tar -x and unzip look up every name before creating it.
// Each such lookup costs a HEAD (and the fs layer's probe for a directory
// of that name, a LIST). When a directory sees misses of a second name
// within NegativeTTL and no listing of it is at hand, the Cache lists its first page
// instead (one request, up to 1,000 entries); if that is the whole
// directory, the listing answers every further miss there without a
// request until it is NegativeTTL old, and this mount's own changes mark
// their names in it instead of dropping it. Once it has expired, the next
// miss there within burstMemory NegativeTTLs of the last lists it again. A directory larger than one
// page is remembered as such for ListTTL and gets HEADs as before.
type burst struct {
	missKey    string    // the name the last miss there was of
	missAt     time.Time // when it was
	many       bool      // misses of more than one name, each within NegativeTTL of the one before
	largeUntil time.Time // its first page was not all of it, as of then
}

// missedLocked records that a lookup of key found nothing.
func (m *Cache) missedLocked(key string, now time.Time) {
	if !m.burstsOn() || key == "" || strings.HasSuffix(key, "/") {
		return
	}
	prefix := parent(key)
	b := m.bursts[prefix]
	if b == nil {
		m.makeRoomLocked(now)
		b = &burst{}
		m.bursts[prefix] = b
	}
	b.many = (b.many || b.missKey != key) && b.missKey != "" && now.Before(b.missAt.Add(m.negativeTTL))
	b.missKey, b.missAt = key, now
}

// largeDirLocked records that prefix had more than one page at start.
func (m *Cache) largeDirLocked(prefix string, start time.Time) {
	if !m.burstsOn() {
		return
	}
	b := m.bursts[prefix]
	if b == nil {
		m.makeRoomLocked(start)
		b = &burst{}
		m.bursts[prefix] = b
	}
	b.largeUntil = start.Add(m.listTTL)
}

// makeRoomLocked keeps bursts within maxBursts: expired ones go first, and
// all of them if that is not enough.
func (m *Cache) makeRoomLocked(now time.Time) {
	if len(m.bursts) < maxBursts {
		return
	}
	for p, b := range m.bursts {
		if !now.Before(b.missAt.Add(m.negativeTTL)) && !now.Before(b.largeUntil) {
			delete(m.bursts, p)
		}
	}
	if len(m.bursts) >= maxBursts {
		clear(m.bursts)
	}
}

// inBurstLocked reports whether a lookup of key that the cache cannot
// answer should list its directory first.
func (m *Cache) inBurstLocked(key string, now time.Time) bool {
	if !m.burstsOn() || key == "" || strings.HasSuffix(key, "/") {
		return false
	}
	prefix := parent(key)
	b := m.bursts[prefix]
	if b == nil || !b.many || !now.Before(b.missAt.Add(burstMemory*m.negativeTTL)) || now.Before(b.largeUntil) {
		return false
	}
	// A listing young enough to answer for missing names has already said
	// what it knows of key.
	d := m.freshDirLocked(prefix, now)
	return d == nil || d.l.Next != "" || !now.Before(d.taken.Add(m.negativeTTL))
}

func (m *Cache) burstsOn() bool {
	return m.negativeTTL >= minBurstTTL && m.listTTL >= minBurstTTL
}

// listFirstPage lists the first page of prefix for a burst; the listing is
// cached when it is the whole directory. A failure is left to the HEAD the
// caller sends next.
func (m *Cache) listFirstPage(ctx context.Context, prefix string) {
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	_, err := m.do(ctx, "page "+strconv.FormatUint(gen, 10)+" "+prefix, func(ctx context.Context) (any, error) {
		return m.list(ctx, prefix, 1)
	})
	if err != nil {
		m.log.Debug("meta: listing for a burst of lookups failed", "prefix", prefix, "err", err)
	}
}

// childOf returns the entry of the listing of prefix that key, which lies
// below prefix, is or lies under: "a/b/" for prefix "a/" and key "a/b/c",
// and key itself for "a/b" or the marker "a/b/".
func childOf(prefix, key string) string {
	rest := key[len(prefix):]
	if i := strings.Index(rest, "/"); i >= 0 && i < len(rest)-1 {
		return prefix + rest[:i+1]
	}
	return key
}
