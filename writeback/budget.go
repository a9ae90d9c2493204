package writeback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBufferExhausted is returned by a write that cannot get buffer memory
// because the whole budget sits in partly filled buffers of other files and
// no upload is running to free any of it.
var ErrBufferExhausted = errors.New("writeback: write buffer exhausted by open files; raise --write-buffer or write fewer files at once")

// budget is the Writer-wide allowance of buffered bytes. Unlike a plain
// semaphore it knows how many uploads are running, so a wait that nothing
// can end is reported instead of lasting forever.
type budget struct {
	total int64
	stall time.Duration // how long a wait may last with no upload running

	mu       sync.Mutex
	used     int64         // guarded by mu
	peak     int64         // guarded by mu
	waiting  int           // guarded by mu
	inflight int           // uploads running; guarded by mu
	changed  chan struct{} // closed and replaced on every release; guarded by mu
}

func newBudget(total int64, stall time.Duration) *budget {
	return &budget{total: total, stall: stall, changed: make(chan struct{})}
}

// acquire takes n bytes, waiting while the budget is spent.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n > b.total {
		return fmt.Errorf("writeback: a %d-byte buffer exceeds the %d-byte budget", n, b.total)
	}
	var idleSince time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.total {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			return nil
		}
		changed, inflight := b.changed, b.inflight
		b.waiting++
		b.mu.Unlock()

		if inflight > 0 {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = time.Now()
		} else if time.Since(idleSince) >= b.stall {
			b.doneWaiting()
			return ErrBufferExhausted
		}
		timer := time.NewTimer(time.Second)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			b.doneWaiting()
			return ctx.Err()
		}
		timer.Stop()
		b.doneWaiting()
	}
}

func (b *budget) doneWaiting() {
	b.mu.Lock()
	b.waiting--
	b.mu.Unlock()
}

// tryAcquire takes n bytes if they are free now.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.total {
		return false
	}
	b.used += n
	b.peak = max(b.peak, b.used)
	return true
}

// release returns n bytes and wakes the waiters.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used = max(b.used-n, 0)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// uploadStarted and uploadEnded count the uploads that will free memory.
func (b *budget) uploadStarted() {
	b.mu.Lock()
	b.inflight++
	b.mu.Unlock()
}

func (b *budget) uploadEnded() {
	b.mu.Lock()
	b.inflight--
	b.mu.Unlock()
}

// BudgetStats is a snapshot of the write budget.
type BudgetStats struct {
	Total, Used, Peak int64
	Waiting, Uploads  int
}

func (b *budget) stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{Total: b.total, Used: b.used, Peak: b.peak, Waiting: b.waiting, Uploads: b.inflight}
}
