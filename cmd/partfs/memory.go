package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"time"
)

// memoryOverhead is what partfs needs beside its buffers: the runtime,
// go-fuse's request buffers, HTTP connections (measured idle at about
// 20 MiB; a 2 GiB write with a 64 MiB write buffer peaked at 93 MiB).
const memoryOverhead = 64 << 20

// setMemoryLimit tells the garbage collector what the mount may hold: the
// write buffer, the read cache and read-ahead, and a fixed overhead. Without
// it the heap may grow to twice what is live before a collection, and blocks
// evicted from the cache would count twice in the process's memory. An
// explicit GOMEMLIMIT wins.
func setMemoryLimit(cfg *config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.WriteBuffer + cfg.CacheSize + cfg.ReadAhead + memoryOverhead
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}

// offIfZero maps a flag's 0 (no caching) to the negative value that the fs
// package reads as off.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
