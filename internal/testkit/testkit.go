// Package testkit holds what the tests of several packages share: a clock
// they set by hand, reproducible pseudo-random bytes, and a bounded wait for
// a condition. Only tests import it.
package testkit

import (
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// Clock is a time source that moves only when told to. Its Now method
// goes where an Options struct asks for a clock. It is safe for concurrent
// use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the time the clock shows.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set makes the clock show t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// RandomReader returns an endless stream of pseudo-random bytes, the same
// for the same seed.
func RandomReader(seed uint64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(key)
}

// RandomBytes returns the first n bytes of RandomReader(seed).
func RandomBytes[N int | int64](seed uint64, n N) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(RandomReader(seed), b); err != nil {
		panic(err) // ChaCha8 never fails
	}
	return b
}

// WaitFor polls cond every millisecond until it holds, and fails the test
// if it does not within 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
