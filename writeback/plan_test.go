package writeback

import (
	"testing"

	"github.com/partfs/partfs/store"
)

func TestPlanReachesObjectLimit(t *testing.T) {
	for _, base := range []int64{5 << 20, 8 << 20, 12 << 20, 16 << 20, 100 << 20, 5 << 30} {
		p := newPlan(base, store.MaxPartSize, planStep, store.MaxParts)
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
	p := newPlan(store.MaxPartSize, store.MaxPartSize, planStep, store.MaxParts)
	if got := p.MaxSize(); got < want {
		t.Fatalf("10,000 parts of 5 GiB hold %d bytes, want at least 48.8 TiB (%d)", got, want)
	}
	if got := p.Part(want - 1); got > store.MaxParts {
		t.Fatalf("the last byte of a 48.8 TiB file is in part %d", got)
	}
	if got := newPlan(8<<20, store.MaxPartSize, planStep, store.MaxParts).MaxSize(); got < 46<<40 {
		t.Fatalf("with 8 MiB first parts 10,000 parts hold %d bytes, want at least 46 TiB", got)
	}
}

func TestPlanKeepsSmallFilesOnBasePartSize(t *testing.T) {
	p := newPlan(8<<20, store.MaxPartSize, planStep, store.MaxParts)
	for n := 1; n <= planStep; n++ {
		if p.Size(n) != 8<<20 {
			t.Fatalf("part %d: size %d, want the base 8 MiB", n, p.Size(n))
		}
	}
	if p.Size(planStep+1) != 16<<20 {
		t.Fatalf("part %d: size %d, want 16 MiB", planStep+1, p.Size(planStep+1))
	}
}

func TestPlanOfWriter(t *testing.T) {
	// With a StagePrefix parts grow to 5 GiB whatever the budget: with the
	// default 8 MiB first parts, 10,000 parts hold 50,800,336,306,176 bytes
	// (46.2 TiB), above S3's 50 TB object limit. Without one, parts stop at
	// half the budget, as the README states, and are all buffered whole.
	for _, tc := range []struct {
		name        string
		opts        Options
		largest     int64
		maxSize     int64
		firstStaged int // 0: none
	}{
		// Parts 257-320 are 128 MiB, a quarter of 512 MiB: the largest buffered whole.
		{"staged", Options{StagePrefix: "s/"}, store.MaxPartSize, 50_800_336_306_176, 5*planStep + 1},
		{"staged, small budget", Options{StagePrefix: "s/", BufferBytes: 16 << 20}, store.MaxPartSize, 50_800_336_306_176, planStep + 1},
		{"no prefix", Options{}, 256 << 20, 2_615_098_212_352, 0},
		{"no prefix, 5 GiB budget", Options{BufferBytes: 5 << 30}, 2560 << 20, 25_571_698_409_472, 0},
		{"no prefix, 10 GiB budget", Options{BufferBytes: 10 << 30}, store.MaxPartSize, 50_800_336_306_176, 0},
		{"no prefix, budget of two parts", Options{BufferBytes: 16 << 20}, 8 << 20, 10000 * 8 << 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(nil, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			p := w.Plan()
			biggest := int64(0)
			for n := 1; n <= p.MaxParts; n++ {
				biggest = max(biggest, p.Size(n))
			}
			if biggest != tc.largest || p.MaxSize() != tc.maxSize {
				t.Fatalf("largest part %d, MaxSize %d; want %d and %d", biggest, p.MaxSize(), tc.largest, tc.maxSize)
			}
			first := 0
			for n := p.MaxParts; n >= 1 && w.staged(n); n-- {
				first = n
			}
			if first != tc.firstStaged {
				t.Fatalf("parts from %d on are staged, want from %d (0: none)", first, tc.firstStaged)
			}
		})
	}
	// The default base with uncapped parts passes S3's 50 TB limit.
	if got := newPlan(DefaultPartSize, store.MaxPartSize, planStep, store.MaxParts).MaxSize(); got <= store.MaxObjectSize {
		t.Fatalf("MaxSize %d, not above S3's %d", got, store.MaxObjectSize)
	}
	// The cap never goes below the base size.
	if got := newPlan(8<<20, 1<<20, planStep, 10).Size(1); got != 8<<20 {
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
		p := newPlan(base, largest, planStep, store.MaxParts)
		size := p.Size(n)
		if size < base || size > store.MaxPartSize || (largest >= base && size > largest) {
			t.Fatalf("base %d largest %d: part %d is %d bytes", base, largest, n, size)
		}
	})
}

func TestPlanPartOfOffset(t *testing.T) {
	p := newPlan(5<<20, 1<<30, planStep, 200)
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
