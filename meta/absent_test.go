package meta

import (
	"testing"
	"time"

	"github.com/partfs/partfs/store/memstore"
)

func TestAbsentDirs(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	newCache := func(ttl time.Duration) *Cache {
		return New(memstore.New(memstore.Options{}), Options{NegativeTTL: ttl, Now: clock})
	}
	remember := func(m *Cache, prefix string) {
		m.mu.Lock()
		gen := m.gen
		m.mu.Unlock()
		m.rememberAbsent(prefix, gen)
	}
	tests := []struct {
		name   string
		change func(m *Cache)
		gone   []string // forgotten by the change
		kept   []string
	}{
		{"object", func(m *Cache) { m.Invalidate("a/b/c") }, []string{"a/", "a/b/"}, []string{"a/b/c/", "x/"}},
		{"marker", func(m *Cache) { m.Invalidate("a/b/c/") }, []string{"a/", "a/b/", "a/b/c/"}, []string{"a/b/c/d/", "x/"}},
		{"top-level object", func(m *Cache) { m.Invalidate("a") }, nil, []string{"a/", "a/b/", "x/"}},
		{"directory", func(m *Cache) { m.InvalidateDir("a/b/") }, []string{"a/", "a/b/", "a/b/c/", "a/b/c/d/"}, []string{"x/", "a/bc/"}},
	}
	all := []string{"a/", "a/b/", "a/b/c/", "a/b/c/d/", "a/bc/", "x/"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newCache(time.Second)
			for _, p := range all {
				remember(m, p)
			}
			tt.change(m)
			for _, p := range tt.gone {
				if m.dirAbsent(p) {
					t.Errorf("%s still remembered", p)
				}
			}
			for _, p := range tt.kept {
				if !m.dirAbsent(p) {
					t.Errorf("%s forgotten", p)
				}
			}
		})
	}

	m := newCache(time.Second)
	m.mu.Lock()
	gen := m.gen
	m.mu.Unlock()
	m.Invalidate("elsewhere/x")
	m.rememberAbsent("p/", gen)
	if m.dirAbsent("p/") {
		t.Error("a probe in flight during a change was remembered")
	}
	remember(m, "p/")
	now = now.Add(time.Second)
	if m.dirAbsent("p/") {
		t.Error("remembered past the TTL")
	}
	if off := newCache(-1); func() bool { remember(off, "p/"); return off.dirAbsent("p/") }() {
		t.Error("remembered with a negative TTL")
	}
}
