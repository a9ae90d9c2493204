package writeback

import (
	"testing"

	"github.com/partfs/partfs/store"
)

func TestPlanReachesObjectLimit(t *testing.T) {
	for _, base := range []int64{5 << 20, 8 << 20, 12 << 20, 16 << 20, 100 << 20, 5 << 30} {
		p := newPlan(base, store.MaxPartSize, store.MaxParts)
		var total int64
		prev := int64(0)
		for n := 1; n <= store.MaxParts; n++ {
			size := p.Size(n)
			if size < store.MinPartSize || size > store.MaxPartSize {
				t.Fatalf("base %d: part %d has size %d, outside S3's 5 MiB..5 GiB", base, n, size)
			}
			if size < prev {
				t.Fatalf("base %d: part %d (%d) smaller than part %d (%d)", base, n, size, n-1, prev)
			}
			prev = size
			total += size
		}
		if total != p.MaxSize() {
			t.Fatalf("base %d: MaxSize %d, sum of parts %d", base, p.MaxSize(), total)
		}
		if total < store.MaxObjectSize {
			t.Errorf("base %d: 10,000 parts hold %d bytes, less than S3's %d-byte object limit", base, total, store.MaxObjectSize)
		}
		if got := p.Size(store.MaxParts); got != store.MaxPartSize {
			t.Errorf("base %d: part 10,000 is %d bytes, want 5 GiB", base, got)
		}
	}
}

func TestPlanHolds48TiBWithLargestParts(t *testing.T) {
	// 10,000 parts of 5 GiB hold 48.83 TiB, the most any multipart upload
	// can; with --part-size 5GiB (and a budget to match) the schedule is
	// exactly that. Smaller first parts give up some of it (at most ten
	// doublings of 64 parts below 5 GiB), and still pass S3's 50 TB object
	// limit, as TestPlanReachesObjectLimit shows.
	const want = int64(488 * (1 << 40) / 10) // 48.8 TiB
	p := newPlan(store.MaxPartSize, store.MaxPartSize, store.MaxParts)
	if got := p.MaxSize(); got < want {
		t.Fatalf("10,000 parts of 5 GiB hold %d bytes, want at least 48.8 TiB (%d)", got, want)
	}
	if got := p.Part(want - 1); got > store.MaxParts {
		t.Fatalf("the last byte of a 48.8 TiB file is in part %d", got)
	}
	if got := newPlan(8<<20, store.MaxPartSize, store.MaxParts).MaxSize(); got < 46<<40 {
		t.Fatalf("with 8 MiB first parts 10,000 parts hold %d bytes, want at least 46 TiB", got)
	}
}

func TestPlanKeepsSmallFilesOnBasePartSize(t *testing.T) {
	p := newPlan(8<<20, store.MaxPartSize, store.MaxParts)
	for n := 1; n <= planStep; n++ {
		if p.Size(n) != 8<<20 {
			t.Fatalf("part %d: size %d, want the base 8 MiB", n, p.Size(n))
		}
	}
	if p.Size(planStep+1) != 16<<20 {
		t.Fatalf("part %d: size %d, want 16 MiB", planStep+1, p.Size(planStep+1))
	}
}

func TestPlanCapsPartsToBudget(t *testing.T) {
	// A 512 MiB budget allows parts of up to 256 MiB.
	p := newPlan(8<<20, 256<<20, store.MaxParts)
	for n := 1; n <= store.MaxParts; n++ {
		if p.Size(n) > 256<<20 {
			t.Fatalf("part %d: %d bytes, over the 256 MiB cap", n, p.Size(n))
		}
	}
	if got := p.MaxSize(); got < 2<<40 {
		t.Fatalf("MaxSize %d, want at least 2 TiB with 256 MiB parts", got)
	}
	// The cap never goes below the base size.
	if got := newPlan(8<<20, 1<<20, 10).Size(1); got != 8<<20 {
		t.Fatalf("cap below base: part 1 is %d bytes", got)
	}
}

func FuzzPlan(f *testing.F) {
	f.Add(int64(5<<20), int64(5<<30), 1)
	f.Add(int64(8<<20), int64(256<<20), 10000)
	f.Fuzz(func(t *testing.T, base, largest int64, n int) {
		if base < store.MinPartSize || base > store.MaxPartSize || n < 1 || n > store.MaxParts {
			return
		}
		p := newPlan(base, largest, store.MaxParts)
		size := p.Size(n)
		if size < base || size > store.MaxPartSize || (largest >= base && size > largest) {
			t.Fatalf("base %d largest %d: part %d is %d bytes", base, largest, n, size)
		}
	})
}

func TestPlanPartOfOffset(t *testing.T) {
	p := newPlan(5<<20, 1<<30, 200)
	for n := 1; n <= 200; n++ {
		lo, hi := p.Start(n), p.Start(n+1)
		if hi-lo != p.Size(n) {
			t.Fatalf("part %d spans %d bytes, size %d", n, hi-lo, p.Size(n))
		}
		for _, off := range []int64{lo, lo + 1, hi - 1} {
			if got := p.Part(off); got != n {
				t.Fatalf("offset %d: part %d, want %d", off, got, n)
			}
		}
	}
	if got := p.Part(p.MaxSize()); got != 201 {
		t.Fatalf("offset MaxSize: part %d, want 201", got)
	}
}
