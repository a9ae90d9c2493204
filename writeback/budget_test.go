package writeback

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"
)

func TestBudgetReusesAndReleasesBuffers(t *testing.T) {
	b := newBudget(4<<20, time.Second)
	ctx := context.Background()
	first, err := b.get(ctx, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	first = first[:1]
	b.put(first)
	again, _ := b.get(ctx, 1<<20)
	if &again[:1][0] != &first[0] {
		t.Fatal("a kept buffer of the right size was not reused")
	}
	b.put(again)
	first, again = nil, nil

	// Four 1 MiB buffers kept idle fill the budget; a 2 MiB request drops
	// two of them, and nothing may keep those alive.
	var ptrs []weak.Pointer[byte]
	var held [][]byte
	for range 4 {
		buf, _ := b.get(ctx, 1<<20)
		buf = buf[:1]
		ptrs = append(ptrs, weak.Make(&buf[0]))
		held = append(held, buf)
	}
	for _, buf := range held {
		b.put(buf)
	}
	held = nil
	big, ok := b.tryGet(2 << 20)
	if !ok {
		t.Fatal("no room made for a 2 MiB buffer")
	}
	if s := b.stats(); s.Used+s.Idle > s.Total || s.Used != 2<<20 || s.Idle != 2<<20 {
		t.Fatalf("stats %+v: want 2 MiB used and 2 MiB kept", s)
	}
	runtime.GC()
	collected := 0
	for _, p := range ptrs {
		if p.Value() == nil {
			collected++
		}
	}
	if collected != 2 {
		t.Fatalf("%d of the 4 buffers were collected, want the 2 dropped", collected)
	}
	b.put(big)
}

func TestBudgetStallIsReported(t *testing.T) {
	b := newBudget(1<<20, 100*time.Millisecond)
	held, _ := b.get(context.Background(), 1<<20)
	if _, err := b.get(context.Background(), 1<<20); err != ErrBufferExhausted {
		t.Fatalf("err %v, want ErrBufferExhausted", err)
	}
	b.put(held)
}
