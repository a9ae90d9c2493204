package writeback

import (
	"slices"
	"testing"
)

func TestSpans(t *testing.T) {
	var s spans
	s = s.add(10, 20).add(30, 40).add(20, 25).add(50, 60).add(35, 52)
	if want := (spans{{10, 25}, {30, 60}}); !slices.Equal(s, want) {
		t.Fatalf("add: %v, want %v", s, want)
	}
	var g []span
	s.gaps(0, 70, func(lo, hi int64) { g = append(g, span{lo, hi}) })
	if want := []span{{0, 10}, {25, 30}, {60, 70}}; !slices.Equal(g, want) {
		t.Fatalf("gaps: %v, want %v", g, want)
	}
	if !s.covers(31, 59) || s.covers(24, 31) || !s.covers(5, 5) {
		t.Fatal("covers wrong")
	}
	if want := (spans{{10, 25}, {30, 33}}); !slices.Equal(s.cut(33), want) {
		t.Fatalf("cut: %v", s.cut(33))
	}
}

func FuzzSpans(f *testing.F) {
	f.Add([]byte{3, 9, 1, 4, 8, 12})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const n = 64
		var s spans
		var want [n]bool
		for i := 0; i+1 < len(ops); i += 2 {
			lo, hi := int64(ops[i]%n), int64(ops[i+1]%n)
			if lo > hi {
				lo, hi = hi, lo
			}
			s = s.add(lo, hi)
			for j := lo; j < hi; j++ {
				want[j] = true
			}
		}
		var got [n]bool
		for _, r := range s {
			for j := r.lo; j < r.hi; j++ {
				got[j] = true
			}
		}
		if got != want {
			t.Fatalf("spans %v disagree with the bitmap", s)
		}
		for i := 1; i < len(s); i++ {
			if s[i-1].hi >= s[i].lo {
				t.Fatalf("spans %v not disjoint and separated", s)
			}
		}
		var gapped [n]bool
		s.gaps(0, n, func(lo, hi int64) {
			for j := lo; j < hi; j++ {
				gapped[j] = true
			}
		})
		for j := range n {
			if gapped[j] == want[j] {
				t.Fatalf("gaps and spans disagree at %d", j)
			}
		}
	})
}
