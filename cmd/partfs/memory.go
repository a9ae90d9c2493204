package main

import (
	"os"
	"runtime/debug"
	"time"
)

// memoryOverhead is the Go memory partfs needs beside its buffers: the
// runtime, go-fuse's request buffers, HTTP connections (an idle mount holds
// about 20 MiB). It is kept below the 64 MiB that the memory tests allow, as
// the limit counts the Go runtime's memory, not the process's: the binary's
// own pages come on top.
const memoryOverhead = 48 << 20

// memoryLimit keeps the garbage collector's memory limit at what the mount
// holds or may soon hold: the read cache and read-ahead, the write buffers
// in use or kept for reuse, and a fixed overhead. Without a limit the heap
// may grow to twice what is live before a collection, so blocks evicted from
// the cache would count twice in the process's memory. The write buffer is
// counted as used rather than as configured, so that a mount that only reads
// is held to its read budgets. An explicit GOMEMLIMIT wins.
type memoryLimit struct {
	fixed int64             // cache, read-ahead and overhead
	used  func() int64      // write buffers held
	set   func(int64) int64 // debug.SetMemoryLimit
	last  int64
}

func newMemoryLimit(cfg *config, used func() int64) *memoryLimit {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	fixed := cfg.CacheSize + memoryOverhead
	if cfg.CacheSize > 0 {
		fixed += cfg.ReadAhead
	}
	return &memoryLimit{fixed: fixed, used: used, set: debug.SetMemoryLimit}
}

// update sets the limit when what the write buffers hold has moved by more
// than a part or so since the last call.
func (l *memoryLimit) update() {
	if l == nil {
		return
	}
	limit := l.fixed + l.used()
	if d := limit - l.last; d > 4<<20 || d < -4<<20 {
		l.set(limit)
		l.last = limit
	}
}

// run updates the limit every period until stop is closed.
func (l *memoryLimit) run(period time.Duration, stop <-chan struct{}) {
	if l == nil {
		return
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		l.update()
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// offIfZero maps a flag's 0 (no caching) to the negative value that the fs
// package reads as off.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
