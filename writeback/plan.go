package writeback

import (
	"sort"

	"github.com/partfs/partfs/store"
)

// planStep is how many parts share one size before the size doubles. With a
// base part size of at least 5 MiB there are at most ten doublings below
// 5 GiB, so the parts that are not 5 GiB lose at most 64 × 10 × 5 GiB of the
// 10,000 × 5 GiB maximum: 10,000 parts still hold more than 50 TB.
const planStep = 64

// Plan is the part-size schedule of a file. Part n always covers the same
// bytes of the file, [Start(n), Start(n+1)), whatever order they are written
// in, so an edit anywhere maps to one part number.
type Plan struct {
	Base     int64 // size of the first parts
	Max      int64 // no part is larger
	Step     int   // parts per doubling
	MaxParts int   // part numbers run 1..MaxParts

	starts []int64 // starts[n] is where part n begins; starts[MaxParts+1] is MaxSize
}

// newPlan returns the schedule for a base part size, a largest part, the
// parts per doubling and the number of parts.
func newPlan(base, largest int64, step, maxParts int) Plan {
	largest = max(min(largest, store.MaxPartSize), base)
	p := Plan{Base: base, Max: largest, Step: step, MaxParts: maxParts}
	p.starts = make([]int64, maxParts+2)
	for n := 1; n <= maxParts; n++ {
		p.starts[n+1] = p.starts[n] + p.Size(n)
	}
	return p
}

// Start is the file offset where part n begins (1 <= n <= MaxParts+1).
func (p Plan) Start(n int) int64 { return p.starts[n] }

// Part is the number of the part holding offset off; MaxParts+1 past MaxSize.
func (p Plan) Part(off int64) int {
	// The first n with starts[n+1] > off.
	return sort.Search(p.MaxParts, func(i int) bool { return p.starts[i+2] > off }) + 1
}

// Size is the size of part n (1-based).
func (p Plan) Size(n int) int64 {
	size := p.Base
	for d := (n - 1) / p.Step; d > 0 && size < p.Max; d-- {
		size *= 2
	}
	return min(size, p.Max)
}

// MaxSize is the largest file the schedule can hold in MaxParts parts.
func (p Plan) MaxSize() int64 { return p.starts[p.MaxParts+1] }
