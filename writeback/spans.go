package writeback

// spans is a sorted set of disjoint, non-adjacent byte ranges [lo, hi):
// the parts of a slot buffer that hold the file's bytes. Almost always one
// range (sequential writes), so a slice beats any tree.
type spans []span

type span struct{ lo, hi int64 }

// add inserts [lo, hi), merging with the ranges it touches.
func (s spans) add(lo, hi int64) spans {
	if lo >= hi {
		return s
	}
	out := s[:0:0]
	i := 0
	for ; i < len(s) && s[i].hi < lo; i++ {
		out = append(out, s[i])
	}
	for ; i < len(s) && s[i].lo <= hi; i++ {
		lo, hi = min(lo, s[i].lo), max(hi, s[i].hi)
	}
	out = append(out, span{lo, hi})
	return append(out, s[i:]...)
}

// cut drops everything at or past n.
func (s spans) cut(n int64) spans {
	out := s[:0:0]
	for _, r := range s {
		if r.lo < n {
			out = append(out, span{r.lo, min(r.hi, n)})
		}
	}
	return out
}

// covers reports whether [lo, hi) is entirely inside the set.
func (s spans) covers(lo, hi int64) bool {
	if lo >= hi {
		return true
	}
	for _, r := range s {
		if r.lo <= lo && hi <= r.hi {
			return true
		}
	}
	return false
}

// gaps calls f for each maximal range of [lo, hi) outside the set.
func (s spans) gaps(lo, hi int64, f func(lo, hi int64)) {
	for _, r := range s {
		if r.hi <= lo {
			continue
		}
		if r.lo >= hi {
			break
		}
		if r.lo > lo {
			f(lo, r.lo)
		}
		lo = max(lo, r.hi)
	}
	if lo < hi {
		f(lo, hi)
	}
}
