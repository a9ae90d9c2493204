package meta

import (
	"context"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
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

// A probe that lists a marker whose version a Stat saw before answers the
// next Stat of the marker without a HEAD.
func TestFindDirKnownMarker(t *testing.T) {
	now := time.Unix(1000, 0)
	st := memstore.New(memstore.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := st.Put(ctx, "d/", nil, store.Sum(nil), store.PutOptions{Metadata: store.Metadata{"mode": "16877"}}); err != nil {
		t.Fatal(err)
	}
	m := New(st, Options{Now: func() time.Time { return now }})
	if _, err := m.Stat(ctx, "d/"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second) // the Stat result has expired
	st.ResetCalls()
	found, marker, err := m.FindDir(ctx, "d/")
	if err != nil || !found || !marker {
		t.Fatalf("FindDir: %v %v %v", found, marker, err)
	}
	obj, err := m.Stat(ctx, "d/")
	if err != nil || obj.Metadata["mode"] != "16877" {
		t.Fatalf("Stat after the probe: %+v %v", obj, err)
	}
	if n := len(st.CallsTo("Stat")); n != 0 {
		t.Errorf("%d HEADs after a probe listed a known marker, want 0", n)
	}
}
