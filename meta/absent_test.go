package fs

import (
	"testing"
	"time"
)

func TestAbsentDirs(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		name   string
		change func(a *absentDirs)
		gone   []string // forgotten by the change
		kept   []string
	}{
		{"object", func(a *absentDirs) { a.changed("a/b/c") }, []string{"a/", "a/b/"}, []string{"a/b/c/", "x/"}},
		{"marker", func(a *absentDirs) { a.changed("a/b/c/") }, []string{"a/", "a/b/", "a/b/c/"}, []string{"a/b/c/d/", "x/"}},
		{"top-level object", func(a *absentDirs) { a.changed("a") }, nil, []string{"a/", "a/b/", "x/"}},
		{"directory", func(a *absentDirs) { a.changedDir("a/b/") }, []string{"a/", "a/b/", "a/b/c/", "a/b/c/d/"}, []string{"x/", "a/bc/"}},
	}
	all := []string{"a/", "a/b/", "a/b/c/", "a/b/c/d/", "a/bc/", "x/"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAbsentDirs(time.Second, clock)
			for _, p := range all {
				a.remember(p, a.begin())
			}
			tt.change(a)
			for _, p := range tt.gone {
				if a.isAbsent(p) {
					t.Errorf("%s still remembered", p)
				}
			}
			for _, p := range tt.kept {
				if !a.isAbsent(p) {
					t.Errorf("%s forgotten", p)
				}
			}
		})
	}

	a := newAbsentDirs(time.Second, clock)
	gen := a.begin()
	a.changed("elsewhere/x")
	a.remember("p/", gen)
	if a.isAbsent("p/") {
		t.Error("a probe in flight during a change was remembered")
	}
	a.remember("p/", a.begin())
	now = now.Add(time.Second)
	if a.isAbsent("p/") {
		t.Error("remembered past the TTL")
	}
	if off := newAbsentDirs(0, clock); func() bool { off.remember("p/", off.begin()); return off.isAbsent("p/") }() {
		t.Error("remembered with a TTL of 0")
	}
}
