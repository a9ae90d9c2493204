package writeback

import "github.com/partfs/partfs/store"

// planStep is how many parts share one size before the size doubles. With a
// base part size of at least 5 MiB there are at most ten doublings below
// 5 GiB, so the parts that are not 5 GiB lose at most 64 × 10 × 5 GiB of the
// 10,000 × 5 GiB maximum: 10,000 parts still hold more than 50 TB.
const planStep = 64

// Plan is the part-size schedule of a file.
type Plan struct {
	Base     int64 // size of the first parts
	Max      int64 // no part is larger
	Step     int   // parts per doubling
	MaxParts int   // part numbers run 1..MaxParts
}

// newPlan returns the schedule for a base part size and a largest part.
func newPlan(base, largest int64, maxParts int) Plan {
	largest = max(min(largest, store.MaxPartSize), base)
	return Plan{Base: base, Max: largest, Step: planStep, MaxParts: maxParts}
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
func (p Plan) MaxSize() int64 {
	var total int64
	for n := 1; n <= p.MaxParts; n++ {
		total += p.Size(n)
	}
	return total
}
