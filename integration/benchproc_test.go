package integration

// The benchmarks' machine accounting. A ratio mount/direct mixes what
// partfs does with what the machine charges for it: on a virtual machine
// that hands freed memory back to its host, the first touch of a fresh page
// can cost several times more than usual, and a cold read through the mount
// touches a new heap page in partfs for every page it caches. The helpers
// here record, for each timed phase through the mount, the CPU time and
// minor page faults partfs spent in it (from /proc/PID/stat), and measure
// how much fresh memory costs on this machine at the time of the run, so
// that a report shows which of the two a slow phase is paying for.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fresh memory calibration: how much is touched, and in steps of what.
const (
	calibrationSize = 256 * miB
	calibrationPage = 4 * kiB
)

// atClockTick is AT_CLKTCK of <elf.h>: the auxiliary vector entry holding
// the kernel's clock ticks per second (sysconf(_SC_CLK_TCK)).
const atClockTick = 17

// procUsage is what a process has spent: CPU time in user space and in the
// kernel, and minor page faults (faults served without I/O, such as the
// first touch of a fresh anonymous page).
type procUsage struct {
	user, system time.Duration
	minorFaults  int64
}

// sub returns the usage between an earlier snapshot and u.
func (u procUsage) sub(earlier procUsage) procUsage {
	return procUsage{
		user:        u.user - earlier.user,
		system:      u.system - earlier.system,
		minorFaults: u.minorFaults - earlier.minorFaults,
	}
}

// usageHeader heads the columns that procUsage.columns fills.
const usageHeader = "  partfs CPU user/sys s  minor faults"

// columns formats u as the columns under usageHeader.
func (u procUsage) columns() string {
	return fmt.Sprintf("  %10.2f / %-8.2f %13d", u.user.Seconds(), u.system.Seconds(), u.minorFaults)
}

// clockTicks returns the kernel's clock ticks per second, the unit of the
// CPU times in /proc/PID/stat, from this process's auxiliary vector; it is
// the same for every process on the machine.
func clockTicks() (int64, error) {
	auxv, err := unix.Auxv()
	if err != nil {
		return 0, fmt.Errorf("read the auxiliary vector: %w", err)
	}
	for _, kv := range auxv {
		if kv[0] == atClockTick && kv[1] > 0 {
			return int64(kv[1]), nil
		}
	}
	return 0, errors.New("no AT_CLKTCK in the auxiliary vector")
}

// readProcUsage reads the usage of process pid, all its threads included,
// from /proc/PID/stat.
func readProcUsage(pid int) (procUsage, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return procUsage{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself; the fields after its last ')' start at field 3.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procUsage{}, fmt.Errorf("%s: no command name in %q", path, b)
	}
	fields := strings.Fields(string(b[i+1:]))
	field := func(n int) (int64, error) {
		if n-3 >= len(fields) {
			return 0, fmt.Errorf("%s: no field %d in %q", path, n, b)
		}
		v, err := strconv.ParseInt(fields[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: field %d: %w", path, n, err)
		}
		return v, nil
	}
	ticks, err := clockTicks()
	if err != nil {
		return procUsage{}, err
	}
	minflt, err1 := field(10)
	utime, err2 := field(14)
	stime, err3 := field(15)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procUsage{}, err
	}
	tick := time.Second / time.Duration(ticks)
	return procUsage{user: time.Duration(utime) * tick, system: time.Duration(stime) * tick, minorFaults: minflt}, nil
}

// usageDuring runs f and returns what process pid spent while it ran; an
// unreadable /proc fails the benchmark.
func usageDuring(b *testing.B, pid int, f func()) procUsage {
	b.Helper()
	before, err := readProcUsage(pid)
	if err != nil {
		b.Fatal(err)
	}
	f()
	after, err := readProcUsage(pid)
	if err != nil {
		b.Fatal(err)
	}
	return after.sub(before)
}

// timedUsage is timed that also returns what process pid spent during f.
func timedUsage(b *testing.B, pid int, f func() error) (time.Duration, procUsage) {
	b.Helper()
	var d time.Duration
	u := usageDuring(b, pid, func() { d = timed(b, f) })
	return d, u
}

// freshMemory is the time this machine took to touch calibrationSize bytes
// of newly mapped anonymous memory, one write per calibrationPage.
type freshMemory time.Duration

// calibrateFreshMemory maps calibrationSize bytes of anonymous memory, writes
// one byte to each calibrationPage of it, and unmaps it. Huge pages are
// refused so that each page costs one fault, as partfs's heap pages do.
func calibrateFreshMemory(b *testing.B) freshMemory {
	b.Helper()
	mem, err := unix.Mmap(-1, 0, int(calibrationSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatalf("mmap %d bytes: %v", calibrationSize, err)
	}
	if err := unix.Madvise(mem, unix.MADV_NOHUGEPAGE); err != nil {
		b.Fatalf("madvise NOHUGEPAGE: %v", err)
	}
	start := time.Now()
	for i := 0; i < len(mem); i += int(calibrationPage) {
		mem[i] = 1
	}
	d := time.Since(start)
	if err := unix.Munmap(mem); err != nil {
		b.Fatalf("munmap: %v", err)
	}
	return freshMemory(d)
}

// String is the report's calibration line.
func (f freshMemory) String() string {
	d := time.Duration(f)
	pages := calibrationSize / calibrationPage
	return fmt.Sprintf("fresh memory: %d MiB of new anonymous memory touched in %.3f s: %.2f µs per %d KiB page, %.0f MB/s",
		calibrationSize/miB, d.Seconds(), d.Seconds()*1e6/float64(pages), calibrationPage/kiB, mbps(calibrationSize, d))
}
