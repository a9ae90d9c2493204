package main

import "testing"

func TestMemoryLimitFollowsWriteBuffers(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	var held, set int64
	l := newMemoryLimit(&config{CacheSize: 256 << 20, ReadAhead: 64 << 20}, func() int64 { return held })
	l.set = func(n int64) int64 { set = n; return 0 }
	l.update()
	if want := int64(256<<20 + 64<<20 + memoryOverhead); set != want {
		t.Fatalf("limit %d with no writes, want %d", set, want)
	}
	held = 2 << 20 // small moves are not worth a call
	set = 0
	l.update()
	if set != 0 {
		t.Fatalf("limit moved for 2 MiB: %d", set)
	}
	held = 64 << 20
	l.update()
	if want := int64(256<<20 + 64<<20 + memoryOverhead + 64<<20); set != want {
		t.Fatalf("limit %d while writing, want %d", set, want)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if newMemoryLimit(&config{}, func() int64 { return 0 }) != nil {
		t.Fatal("GOMEMLIMIT must win")
	}
}
