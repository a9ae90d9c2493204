package integration

// Repeated rounds for the benchmarks' headline cases. On a small machine
// shared with MinIO one run of a case can differ from the next by a factor
// of 1.5 (memory the host has taken back, MinIO's background work), so the
// large sequential cases run benchRounds times, the mount and the direct
// side back to back in each round, in alternating order so that neither
// always runs on the warmer machine. The report gives the median of the
// rounds' paired ratios and every round's ratio.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchRounds is how many times the large sequential cases run.
const benchRounds = 3

// paired holds the rounds of one case: how long the mount and the direct
// side took in each, what partfs spent in the mount side, and the CPU time
// the whole machine (MinIO, partfs, the benchmark, the kernel) was busy for
// during each side.
type paired struct {
	mount, direct         []time.Duration
	usage                 []procUsage
	mountBusy, directBusy []time.Duration
}

// add records one round.
func (p *paired) add(mount, direct sideRun, usage procUsage) {
	p.mount = append(p.mount, mount.took)
	p.direct = append(p.direct, direct.took)
	p.mountBusy = append(p.mountBusy, mount.busy)
	p.directBusy = append(p.directBusy, direct.busy)
	p.usage = append(p.usage, usage)
}

// sideRun is one side of one round: how long it took and how much CPU
// time the machine was busy for meanwhile.
type sideRun struct {
	took, busy time.Duration
}

// runSide runs f, which must succeed, and measures it as a sideRun.
func runSide(b *testing.B, f func() error) sideRun {
	b.Helper()
	before, err := machineBusy()
	if err != nil {
		b.Fatal(err)
	}
	took := timed(b, f)
	after, err := machineBusy()
	if err != nil {
		b.Fatal(err)
	}
	return sideRun{took: took, busy: after - before}
}

// machineBusy returns the CPU time all CPUs have spent not idle (nor
// waiting for I/O) since boot, from the first line of /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	ticks, err := clockTicks()
	if err != nil {
		return 0, err
	}
	var busy int64
	// user nice system idle iowait irq softirq steal ...: all but idle
	// and iowait.
	for i, f := range fields[1:8] {
		if i == 3 || i == 4 {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		busy += v
	}
	return time.Duration(busy) * (time.Second / time.Duration(ticks)), nil
}

// busyLine formats the median round's machine CPU time of both sides per
// GiB moved, for the report.
func (p *paired) busyLine(size int64) string {
	i := p.medianRound()
	perGiB := func(d time.Duration) float64 { return d.Seconds() * float64(giB) / float64(size) }
	return fmt.Sprintf("  machine CPU busy per GiB (all processes and the kernel): mount %.2f s, direct %.2f s",
		perGiB(p.mountBusy[i]), perGiB(p.directBusy[i]))
}

// ratios returns each round's direct time over its mount time: the mount's
// throughput as a fraction of the direct side's.
func (p *paired) ratios() []float64 {
	out := make([]float64, len(p.mount))
	for i := range p.mount {
		out[i] = p.direct[i].Seconds() / p.mount[i].Seconds()
	}
	return out
}

// medianRound returns the round whose ratio is the median (the lower
// middle one for an even count).
func (p *paired) medianRound() int {
	r := p.ratios()
	order := make([]int, len(r))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case r[a] < r[b]:
			return -1
		case r[a] > r[b]:
			return 1
		}
		return 0
	})
	return order[(len(order)-1)/2]
}

// ratio is the median round's ratio.
func (p *paired) ratio() float64 { return p.ratios()[p.medianRound()] }

// rounds formats every round's ratio, in order, for the report.
func (p *paired) rounds() string {
	var parts []string
	for _, r := range p.ratios() {
		parts = append(parts, fmt.Sprintf("%.2f", r))
	}
	return strings.Join(parts, " ")
}

// mountFirst reports whether round i runs the mount side before the direct
// one.
func mountFirst(i int) bool { return i%2 == 1 }
