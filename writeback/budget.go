package writeback

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// ErrBufferExhausted is returned by a write that cannot get buffer memory
// because the whole budget sits in partly filled buffers of other files and
// no upload is running to free any of it.
var ErrBufferExhausted = errors.New("writeback: write buffer exhausted by files written in part; a larger Options.BufferBytes or fewer files written at once would help")

// idleTrim is how long unused buffers are kept for reuse after the last
// buffer was handed out; then they are given back to the runtime.
const idleTrim = 15 * time.Second

// budget owns the buffers that hold dirty data, and bounds them. Buffers
// are kept for reuse instead of being left to the garbage collector, which
// would let the heap grow to twice the live buffers before collecting: the
// bytes in use plus the bytes kept idle never exceed total, so the budget
// bounds what the process really holds. Unlike a plain semaphore it knows
// how many uploads are running, so a wait that nothing can end is reported
// instead of lasting forever.
type budget struct {
	total int64
	stall time.Duration // how long a wait may last with no upload running

	mu        sync.Mutex
	used      int64              // bytes in buffers handed out; guarded by mu
	idle      map[int64][][]byte // buffers kept for reuse, by capacity; guarded by mu
	idleBytes int64              // guarded by mu
	lastGet   time.Time          // guarded by mu
	trimming  bool               // a trim is scheduled; guarded by mu
	peak      int64              // guarded by mu
	waiting   int                // guarded by mu
	inflight  int                // uploads running; guarded by mu
	changed   chan struct{}      // closed and replaced on every put; guarded by mu
}

func newBudget(total int64, stall time.Duration) *budget {
	return &budget{total: total, stall: stall, idle: map[int64][][]byte{}, changed: make(chan struct{})}
}

// get returns an empty buffer of capacity n, waiting while the budget is spent.
func (b *budget) get(ctx context.Context, n int64) ([]byte, error) {
	if n > b.total {
		return nil, fmt.Errorf("writeback: a %d-byte buffer exceeds the %d-byte budget", n, b.total)
	}
	var idleSince time.Time
	for {
		// The channel is taken before trying, so that a put between a
		// failed try and the wait below still ends the wait.
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		if buf, ok := b.tryGet(n); ok {
			return buf, nil
		}
		b.mu.Lock()
		inflight := b.inflight
		b.waiting++
		b.mu.Unlock()

		if inflight > 0 {
			idleSince = time.Time{}
		} else if idleSince.IsZero() {
			idleSince = time.Now()
		} else if time.Since(idleSince) >= b.stall {
			b.doneWaiting()
			return nil, ErrBufferExhausted
		}
		timer := time.NewTimer(time.Second)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			b.doneWaiting()
			return nil, ctx.Err()
		}
		timer.Stop()
		b.doneWaiting()
	}
}

// tryGet is get without waiting: a kept buffer of the right size, else a new
// one if the budget has room, making room by dropping kept buffers of other
// sizes (parts grow with the part number, so sizes change as files grow).
func (b *budget) tryGet(n int64) ([]byte, bool) {
	b.mu.Lock()
	b.lastGet = time.Now()
	if list := b.idle[n]; len(list) > 0 {
		buf := list[len(list)-1]
		list[len(list)-1] = nil // the array must not keep it alive once it is dropped
		b.idle[n] = list[:len(list)-1]
		b.idleBytes -= n
		b.takeLocked(n)
		b.mu.Unlock()
		return buf[:0], true
	}
	if b.used+n > b.total {
		b.mu.Unlock()
		return nil, false
	}
	dropped := false
	for size, list := range b.idle {
		for len(list) > 0 && b.used+b.idleBytes+n > b.total {
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			b.idleBytes -= size
			dropped = true
		}
		b.idle[size] = list
	}
	b.takeLocked(n)
	b.mu.Unlock()
	if dropped {
		// Hand the dropped buffers back before allocating: left to the
		// collector, they would stay resident beside the new one until
		// the heap doubled.
		debug.FreeOSMemory()
	}
	return make([]byte, 0, n), true
}

func (b *budget) takeLocked(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used+b.idleBytes)
}

func (b *budget) doneWaiting() {
	b.mu.Lock()
	b.waiting--
	b.mu.Unlock()
}

// put takes back a buffer from get and wakes the waiters.
func (b *budget) put(buf []byte) {
	n := int64(cap(buf))
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used = max(b.used-n, 0)
	b.idle[n] = append(b.idle[n], buf[:0])
	b.idleBytes += n
	close(b.changed)
	b.changed = make(chan struct{})
	if !b.trimming {
		b.trimming = true
		time.AfterFunc(idleTrim, b.trim)
	}
}

// trim gives the kept buffers back once none has been asked for a while.
func (b *budget) trim() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wait := idleTrim - time.Since(b.lastGet); wait > 0 {
		time.AfterFunc(wait, b.trim)
		return
	}
	b.trimming = false
	clear(b.idle)
	b.idleBytes = 0
	go debug.FreeOSMemory()
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
	Total int64 // the budget
	Used  int64 // bytes in buffers holding dirty data
	Idle  int64 // bytes in buffers kept for reuse
	Peak  int64 // the most ever held, used and idle
	// Waiting is how many writers wait for memory; Uploads how many part
	// uploads are running or queued.
	Waiting, Uploads int
}

func (b *budget) stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BudgetStats{Total: b.total, Used: b.used, Idle: b.idleBytes, Peak: b.peak, Waiting: b.waiting, Uploads: b.inflight}
}
