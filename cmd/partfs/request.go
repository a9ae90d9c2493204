package main

import (
	"strconv"
	"strings"
)

// The kernel's bound on FUSE requests, in pages of 4 KiB: 256 (1 MiB)
// unless root raises fs.fuse.max_pages_limit; kernels without the setting
// fix 256. The kernel reads it when a mount starts.
const (
	maxPagesFile    = "/proc/sys/fs/fuse/max_pages_limit"
	defaultMaxPages = 256
	pageSize        = 4 << 10
)

// kernelMaxRequest returns the largest FUSE request the kernel allows now,
// in bytes, read with readFile (os.ReadFile).
func kernelMaxRequest(readFile func(string) ([]byte, error)) int64 {
	b, err := readFile(maxPagesFile)
	if err != nil {
		return defaultMaxPages * pageSize
	}
	pages, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || pages <= 0 {
		return defaultMaxPages * pageSize
	}
	return pages * pageSize
}

// requestSize returns the FUSE request size of a mount asking for want
// bytes (--max-request), in whole pages and within the kernel's limit,
// which it also returns.
func requestSize(want int64, readFile func(string) ([]byte, error)) (size, limit int64) {
	limit = kernelMaxRequest(readFile)
	want = max(pageSize, want/pageSize*pageSize)
	return min(want, limit), limit
}
