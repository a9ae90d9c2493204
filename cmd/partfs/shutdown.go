package main

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/partfs/partfs/metrics"
)

// progressContext returns a context that ends once S3 has made no
// progress (no request answered, no byte uploaded) for limit, so that
// storing files at unmount ends when S3 stops answering, however many files
// are waiting, and not while uploads still move.
func progressContext(parent context.Context, snapshot func() metrics.Snapshot, limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		tick := time.NewTicker(min(limit/4, 500*time.Millisecond))
		defer tick.Stop()
		progress := func() int64 {
			s := snapshot()
			return s.Requests - s.Errors + s.BytesUploaded
		}
		last, at := progress(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if p := progress(); p != last {
					last, at = p, now
				} else if now.Sub(at) >= limit {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// stopBound is how long unmount and SIGTERM keep storing files once S3 has
// stopped making progress: one operation's whole retry budget, plus the
// stall that ends its last attempt.
func (c *connConfig) stopBound() time.Duration {
	return c.RetryBudget + 2*c.IOTimeout
}

// Where Linux (6.14 and later) reads its FUSE request timeouts, in
// seconds: a connection whose request stays unanswered longer is aborted,
// and the mount is dead ("Transport endpoint is not connected").
const (
	defaultRequestTimeoutFile = "/proc/sys/fs/fuse/default_request_timeout"
	maxRequestTimeoutFile     = "/proc/sys/fs/fuse/max_request_timeout"
)

// kernelRequestTimeout returns the shortest FUSE request timeout in force
// (0: none, or a kernel without them). partfs asks for no timeout of its
// own, so the default applies, capped by the maximum.
func kernelRequestTimeout(read func(string) ([]byte, error)) time.Duration {
	var shortest time.Duration
	for _, name := range []string{defaultRequestTimeoutFile, maxRequestTimeoutFile} {
		b, err := read(name)
		if err != nil {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n <= 0 {
			continue
		}
		if d := time.Duration(n) * time.Second; shortest == 0 || d < shortest {
			shortest = d
		}
	}
	return shortest
}

// fitKernelTimeout keeps every reply within the kernel's request timeout:
// the retry budget and the stall timeout shrink to fit, and the waits of
// close and fsync are capped (fs.Options.ReplyLimit). It returns the cap,
// or 0 when the kernel sets no timeout.
func (c *connConfig) fitKernelTimeout(kernel time.Duration) time.Duration {
	if kernel <= 0 {
		return 0
	}
	limit := kernel * 3 / 4
	c.IOTimeout = max(min(c.IOTimeout, limit/4), time.Second)
	c.RetryBudget = max(min(c.RetryBudget, limit/2), c.IOTimeout)
	return limit
}
