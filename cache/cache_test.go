package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

const testBlock = 1000

// setup stores size pseudo-random bytes as key and returns a cache with
// 1000-byte blocks in front of the store.
func setup(t *testing.T, size int) (*memstore.Store, *Cache, store.Object, []byte) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	data := testkit.RandomBytes(uint64(size), size)
	obj := put(t, mem, "key", data)
	c, err := New(mem, Options{BlockSize: testBlock, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	mem.ResetCalls()
	return mem, c, obj, data
}

func put(t testing.TB, mem *memstore.Store, key string, data []byte) store.Object {
	t.Helper()
	obj, err := mem.Put(context.Background(), key, data, store.Sum(data), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// gets returns the successful Gets, as "off+len".
func gets(mem *memstore.Store) []string {
	var out []string
	for _, c := range mem.CallsTo("Get") {
		out = append(out, fmt.Sprintf("%d+%d", c.Off, c.Length))
	}
	return out
}

func TestReadAt(t *testing.T) {
	_, c, obj, data := setup(t, 2500) // blocks of 1000, 1000 and 500 bytes
	ref := bytes.NewReader(data)
	tests := []struct {
		off int64
		n   int
	}{
		{0, 10}, {0, 1000}, {0, 2500}, {0, 4000}, {999, 2}, {1000, 1000},
		{1500, 1000}, {2000, 500}, {2400, 200}, {2499, 1}, {2499, 5},
		{2500, 1}, {2500, 0}, {3000, 10}, {10, 0}, {1, 2498},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d+%d", tt.off, tt.n), func(t *testing.T) {
			got := make([]byte, tt.n)
			n, err := cacheReadAt(c, context.Background(), obj, got, tt.off)
			want := make([]byte, tt.n)
			wn, werr := ref.ReadAt(want, tt.off)
			if n != wn || err != werr || !bytes.Equal(got[:n], want[:wn]) {
				t.Fatalf("ReadAt = %d, %v; bytes.Reader gives %d, %v (same bytes: %v)", n, err, wn, werr, bytes.Equal(got[:n], want[:wn]))
			}
		})
	}
	if _, err := cacheReadAt(c, context.Background(), obj, make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at a negative offset succeeded")
	}
}

func TestHitsAndBlockRanges(t *testing.T) {
	mem, c, obj, data := setup(t, 2500)
	ctx := context.Background()
	p := make([]byte, 2500)
	if n, err := cacheReadAt(c, ctx, obj, p, 0); n != 2500 || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if got := gets(mem); len(got) != 3 {
		t.Fatalf("Gets %v, want one per block", got)
	}
	for _, call := range mem.CallsTo("Get") {
		if call.Off%testBlock != 0 || (call.Length != testBlock && call.Off+call.Length != 2500) {
			t.Fatalf("Get %+v is not one block", call.Op)
		}
	}
	c.blocks.Wait()
	mem.ResetCalls()
	for _, off := range []int64{0, 500, 1999, 2400} {
		if _, err := cacheReadAt(c, ctx, obj, make([]byte, 100), off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	if got := gets(mem); len(got) != 0 {
		t.Fatalf("cached blocks fetched again: %v", got)
	}
}

func TestGetsArePinned(t *testing.T) {
	mem, c, obj, data := setup(t, 2000)
	ctx := context.Background()
	if _, err := cacheReadAt(c, ctx, obj, make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	c.blocks.Wait()
	v2 := bytes.Repeat([]byte{'x'}, 2000)
	obj2 := put(t, mem, "key", v2)

	// The new version gets blocks of its own, never the old bytes.
	p := make([]byte, 2000)
	if _, err := cacheReadAt(c, ctx, obj2, p, 0); err != nil || !bytes.Equal(p, v2) {
		t.Fatalf("read of the new version: %v, bytes equal %v", err, bytes.Equal(p, v2))
	}
	// The old version's cached block still reads as the old version...
	if _, err := cacheReadAt(c, ctx, obj, p[:10], 0); err != nil || !bytes.Equal(p[:10], data[:10]) {
		t.Fatalf("cached block of the old version: %v", err)
	}
	// ...and an uncached one is refused rather than mixed in.
	if _, err := cacheReadAt(c, ctx, obj, p[:10], 1500); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("uncached block of a replaced version: %v, want ErrPrecondition", err)
	}
}

// blockGets holds every Get of the store until release is closed, and
// counts them.
func blockGets(mem *memstore.Store, release <-chan struct{}) func() int {
	var mu sync.Mutex
	n := 0
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Get" {
			mu.Lock()
			n++
			mu.Unlock()
			<-release
		}
		return nil
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// waitForWaiters waits until n readers wait on the fetch of block i besides
// the one fetching it.
func waitForWaiters(t *testing.T, c *Cache, obj store.Object, i int64, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		f := c.inflight[blockKey(obj, i)]
		ok := f != nil && f.users >= n+1
		c.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("fewer than %d readers wait for block %d", n, i)
}

func TestConcurrentMissesShareOneGet(t *testing.T) {
	mem, c, obj, data := setup(t, 3000)
	release := make(chan struct{})
	count := blockGets(mem, release)
	const readers = 8
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for r := range readers {
		wg.Go(func() {
			p := make([]byte, 100)
			off := int64(1000 + 100*r) // all within block 1
			if _, err := cacheReadAt(c, context.Background(), obj, p, off); err != nil {
				errs <- err
			} else if !bytes.Equal(p, data[off:off+100]) {
				errs <- fmt.Errorf("reader %d got the wrong bytes", r)
			}
		})
	}
	waitForWaiters(t, c, obj, 1, readers-1)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d Gets for one block, want 1", n)
	}
}

// When the reader fetching a block gives up, a waiting reader with a live
// context fetches it itself instead of failing.
func TestWaiterOutlivesFetcher(t *testing.T) {
	mem, c, obj, data := setup(t, 1000)
	release := make(chan struct{})
	first := true
	var mu sync.Mutex
	mem.SetFault(func(op memstore.Op) error {
		mu.Lock()
		isFirst := first
		first = false
		mu.Unlock()
		if isFirst {
			<-release
			return context.Canceled // the fetcher's context ended
		}
		return nil
	})
	fetcherErr := make(chan error, 1)
	go func() {
		_, err := cacheReadAt(c, context.Background(), obj, make([]byte, 10), 0)
		fetcherErr <- err
	}()
	waitForWaiters(t, c, obj, 0, 0) // the fetch is under way
	waiterErr := make(chan error, 1)
	p := make([]byte, 10)
	go func() {
		_, err := cacheReadAt(c, context.Background(), obj, p, 0)
		waiterErr <- err
	}()
	waitForWaiters(t, c, obj, 0, 1)
	close(release)
	if err := <-fetcherErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("fetcher: %v, want its cancellation", err)
	}
	if err := <-waiterErr; err != nil || !bytes.Equal(p, data[:10]) {
		t.Fatalf("waiter: %v", err)
	}
}

func TestMissingBlocksFetchedInParallel(t *testing.T) {
	mem, c, obj, data := setup(t, 5000)
	// Each Get waits until a second one is under way: a serial reader
	// would never get past the first.
	var mu sync.Mutex
	inGet := 0
	both := make(chan struct{})
	mem.SetFault(func(op memstore.Op) error {
		mu.Lock()
		inGet++
		if inGet == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("no second Get in parallel")
		}
	})
	p := make([]byte, 5000)
	if n, err := cacheReadAt(c, context.Background(), obj, p, 0); n != 5000 || err != nil || !bytes.Equal(p, data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if got := gets(mem); len(got) != 5 {
		t.Fatalf("Gets %v, want 5", got)
	}
}

func TestCanceledWaiter(t *testing.T) {
	mem, c, obj, _ := setup(t, 1000)
	release := make(chan struct{})
	defer close(release)
	blockGets(mem, release)
	go func() { _, _ = cacheReadAt(c, context.Background(), obj, make([]byte, 1), 0) }() // holds the fetch open
	waitForWaiters(t, c, obj, 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cacheReadAt(c, ctx, obj, make([]byte, 1), 0)
		done <- err
	}()
	waitForWaiters(t, c, obj, 0, 1)
	cancel()
	expectCanceled(t, done)
}

func TestNoETagReadsAround(t *testing.T) {
	mem, c, obj, data := setup(t, 2500)
	obj.ETag = ""
	for range 2 {
		p := make([]byte, 1500)
		if _, err := cacheReadAt(c, context.Background(), obj, p, 500); err != nil || !bytes.Equal(p, data[500:2000]) {
			t.Fatalf("ReadAt without ETag: %v", err)
		}
	}
	if got := gets(mem); len(got) != 2 || got[0] != "500+1500" {
		t.Fatalf("Gets %v, want one direct Get per read", got)
	}
}

func TestClose(t *testing.T) {
	_, c, obj, _ := setup(t, 100)
	c.Close()
	if _, err := cacheReadAt(c, context.Background(), obj, make([]byte, 1), 0); err == nil {
		t.Fatal("ReadAt after Close succeeded")
	}
	c.Close() // twice is fine
}

func TestDefaults(t *testing.T) {
	c, err := New(memstore.New(memstore.Options{}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.blockSize != 256<<10 || c.blocks.MaxCost() != 256<<20 || c.budget.limit != 64<<20 || c.fetchSize != 8<<20 || c.slack != 4<<20 {
		t.Fatalf("defaults: block %d, max %d, read-ahead %d, fetch %d, slack %d", c.blockSize, c.blocks.MaxCost(), c.budget.limit, c.fetchSize, c.slack)
	}
}

// FuzzReadAt checks the block arithmetic against bytes.Reader.
func FuzzReadAt(f *testing.F) {
	f.Add(uint16(2500), uint8(10), int64(995), uint16(20))
	f.Add(uint16(0), uint8(1), int64(0), uint16(1))
	f.Add(uint16(7), uint8(3), int64(6), uint16(0))
	f.Add(uint16(1000), uint8(255), int64(1000), uint16(5))
	f.Fuzz(func(t *testing.T, size uint16, block uint8, off int64, n uint16) {
		if block == 0 || off < 0 {
			t.Skip()
		}
		mem := memstore.New(memstore.Options{})
		data := testkit.RandomBytes(uint64(size)<<8|uint64(block), int(size))
		obj := put(t, mem, "k", data)
		c, err := New(mem, Options{BlockSize: int64(block), MaxBytes: 64 * int64(block)}) // small: evictions too, and few counters to set up
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 2 { // cold, then (maybe) cached
			got := make([]byte, n)
			gn, gerr := cacheReadAt(c, context.Background(), obj, got, off)
			want := make([]byte, n)
			wn, werr := bytes.NewReader(data).ReadAt(want, off)
			if gn != wn || gerr != werr || !bytes.Equal(got[:gn], want[:wn]) {
				t.Fatalf("size %d block %d: ReadAt(%d bytes at %d) = %d, %v; want %d, %v", size, block, n, off, gn, gerr, wn, werr)
			}
			c.blocks.Wait()
		}
	})
}

// expectCanceled waits for a read whose context was cancelled to return
// context.Canceled.
func expectCanceled(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled read still waits")
	}
}
