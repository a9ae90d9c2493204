package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// raOptions scale read-ahead to 1000-byte blocks: GETs of up to 8 blocks,
// a budget of 32 blocks, a slack of 4 blocks.
var raOptions = Options{
	BlockSize:       testBlock,
	MaxBytes:        1 << 22,
	ReadAheadBytes:  32 * testBlock,
	FetchSize:       8 * testBlock,
	SequentialSlack: 4 * testBlock,
}

// setupRA stores blocks*testBlock random bytes as key and returns a cache
// with opts in front of the store.
func setupRA(t testing.TB, blocks int, opts Options) (*memstore.Store, *Cache, store.Object, []byte) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	data := testkit.RandomBytes(uint64(blocks), blocks*testBlock)
	obj := put(t, mem, "key", data)
	c, err := New(mem, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	mem.ResetCalls()
	return mem, c, obj, data
}

// readSequentially reads r to the end in reads of n bytes and checks them.
func readSequentially(t testing.TB, r *Reader, want []byte, n int) {
	t.Helper()
	p := make([]byte, n)
	for off := 0; off < len(want); off += n {
		got, err := readerAt(context.Background(), r, p, int64(off))
		if err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(p[:got], want[off:min(off+n, len(want))]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
	}
}

func TestSequentialReaderFetchesAheadInFewLargeGets(t *testing.T) {
	const blocks = 400
	mem, c, obj, data := setupRA(t, blocks, raOptions)
	r := c.Open(obj)
	readSequentially(t, r, data, 500)
	if st := c.Stats(); st.ReadAheadBytes != 0 || c.sequential.Load() != 0 {
		t.Errorf("a reader at the end still holds %d bytes of budget or a share of it", st.ReadAheadBytes)
	}
	r.Close()

	var total, longest, large int64
	calls := mem.CallsTo("Get")
	for _, call := range calls {
		total += call.Length
		longest = max(longest, call.Length)
		if call.Length == raOptions.FetchSize {
			large += call.Length
		}
	}
	// The window opens at 2 blocks with 1-block GETs and doubles up to the
	// budget (32 blocks) with 8-block GETs: about 10 small GETs, then 8-block
	// ones for the rest.
	if len(calls) > blocks/8+15 {
		t.Errorf("%d Gets for %d blocks, want few large ones: %v", len(calls), blocks, gets(mem))
	}
	if longest != raOptions.FetchSize || large < total*8/10 {
		t.Errorf("longest Get %d, %d of %d bytes in Gets of FetchSize %d", longest, large, total, raOptions.FetchSize)
	}
	if total != int64(len(data)) {
		t.Errorf("Gets asked for %d bytes of a %d-byte object: some block was fetched twice", total, len(data))
	}
	st := c.Stats()
	if st.ReadAheadPeak == 0 || st.ReadAheadPeak > raOptions.ReadAheadBytes || st.ReadAheadBytes != 0 {
		t.Errorf("read-ahead budget: peak %d (limit %d), %d still held after Close", st.ReadAheadPeak, raOptions.ReadAheadBytes, st.ReadAheadBytes)
	}
	if st.Gets != int64(len(calls)) || st.GetBytes != total {
		t.Errorf("Stats count %d Gets of %d bytes, the store saw %d of %d", st.Gets, st.GetBytes, len(calls), total)
	}
}

// holdGets holds every Get until release is called (at the latest when
// the test ends) and reports how many are being held.
func holdGets(t testing.TB, mem *memstore.Store) (release func(), held func() int) {
	var mu sync.Mutex
	n := 0
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release) // before the cache's Close, which waits for Gets
	mem.SetFault(func(op memstore.Op) error {
		if op.Name != "Get" {
			return nil
		}
		mu.Lock()
		n++
		mu.Unlock()
		<-ch
		mu.Lock()
		n--
		mu.Unlock()
		return nil
	})
	return release, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// quiesce waits until no fetch is in flight.
func quiesce(t *testing.T, c *Cache) {
	t.Helper()
	testkit.WaitFor(t, "fetches to end", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight) == 0
	})
}

func TestReadAheadGetsRunInParallel(t *testing.T) {
	mem, c, obj, data := setupRA(t, 100, raOptions)
	r := c.Open(obj)
	defer r.Close()
	readSequentially(t, r, data[:2000], 1000) // now sequential
	quiesce(t, c)

	release, held := holdGets(t, mem)
	done := make(chan error, 1)
	go func() {
		p := make([]byte, 1000)
		_, err := readerAt(context.Background(), r, p, 2000)
		if err == nil && !bytes.Equal(p, data[2000:3000]) {
			err = errors.New("wrong bytes")
		}
		done <- err
	}()
	// A serial reader would hold one Get and wait for it.
	testkit.WaitFor(t, "two Gets in flight at once", func() bool { return held() >= 2 })
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRandomReaderGetsSmallBlocksOnly(t *testing.T) {
	const blocks = 1000
	mem, c, obj, data := setupRA(t, blocks, raOptions)
	r := c.Open(obj)
	defer r.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	read := map[int64]bool{}
	prev := int64(-1 << 40)
	p := make([]byte, 100)
	for range 200 {
		off := rng.Int64N(int64(len(data)) - 100)
		if d := off - prev; d > -10*testBlock && d < 10*testBlock {
			continue // keep clear of the sequential slack
		}
		prev = off
		read[off/testBlock] = true
		read[(off+99)/testBlock] = true
		if _, err := readerAt(context.Background(), r, p, off); err != nil || !bytes.Equal(p, data[off:off+100]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	calls := mem.CallsTo("Get")
	for _, call := range calls {
		if call.Length != testBlock || call.Off%testBlock != 0 {
			t.Fatalf("random reader sent Get %d+%d, want single blocks", call.Off, call.Length)
		}
	}
	if len(calls) != len(read) {
		t.Errorf("%d Gets for %d distinct blocks read", len(calls), len(read))
	}
	if st := c.Stats(); st.ReadAheadPeak != 0 {
		t.Errorf("random reader fetched ahead %d bytes", st.ReadAheadPeak)
	}
}

// The kernel sends its read-ahead as parallel requests that arrive out of
// order; the reader stays sequential.
func TestOutOfOrderReadsStaySequential(t *testing.T) {
	const blocks = 200
	mem, c, obj, data := setupRA(t, blocks, raOptions)
	r := c.Open(obj)
	defer r.Close()
	p := make([]byte, testBlock)
	for i := 0; i < blocks; i += 4 {
		for _, j := range []int{i + 2, i, i + 3, i + 1} {
			off := int64(j * testBlock)
			if _, err := readerAt(context.Background(), r, p, off); err != nil || !bytes.Equal(p, data[off:off+testBlock]) {
				t.Fatalf("read of block %d: %v", j, err)
			}
		}
	}
	if n := len(mem.CallsTo("Get")); n > blocks/4 {
		t.Errorf("%d Gets for %d blocks read slightly out of order: %v", n, blocks, gets(mem))
	}
}

func TestReadAheadBudgetHoldsAcrossReaders(t *testing.T) {
	const readers, blocks = 12, 150
	mem := memstore.New(memstore.Options{})
	c, err := New(mem, raOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	objs := make([]store.Object, readers)
	datas := make([][]byte, readers)
	rs := make([]*Reader, readers)
	for i := range readers {
		datas[i] = testkit.RandomBytes(uint64(i), blocks*testBlock)
		objs[i] = put(t, mem, fmt.Sprintf("k%d", i), datas[i])
		rs[i] = c.Open(objs[i])
	}
	// Slow every Get a little so that readers overlap.
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Get" {
			time.Sleep(100 * time.Microsecond)
		}
		return nil
	})
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() { // the blocks readers hold ahead never exceed the budget
		defer close(sampled)
		for {
			// Readers move budget only under their own lock, so holding
			// every lock at once gives a true snapshot.
			var held int64
			for _, r := range rs {
				r.mu.Lock()
				for i := range r.ahead {
					held += r.c.blockLen(r.obj, i)
				}
			}
			for _, r := range rs {
				r.mu.Unlock()
			}
			if held > raOptions.ReadAheadBytes {
				sampled <- fmt.Errorf("readers hold %d bytes ahead, budget %d", held, raOptions.ReadAheadBytes)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() { readSequentially(t, rs[i], datas[i], 700) })
	}
	wg.Wait()
	close(stop)
	if err := <-sampled; err != nil {
		t.Error(err)
	}
	st := c.Stats()
	if st.ReadAheadPeak > raOptions.ReadAheadBytes {
		t.Errorf("read-ahead peak %d over the budget %d", st.ReadAheadPeak, raOptions.ReadAheadBytes)
	}
	for _, r := range rs {
		r.Close()
	}
	if st := c.Stats(); st.ReadAheadBytes != 0 {
		t.Errorf("%d bytes of budget still held after every reader closed", st.ReadAheadBytes)
	}
}

func TestReaderNeverMixesVersions(t *testing.T) {
	const blocks = 100
	mem, c, obj, v1 := setupRA(t, blocks, raOptions)
	r := c.Open(obj)
	defer r.Close()
	readSequentially(t, r, v1[:10*testBlock], 500)

	v2 := bytes.Repeat([]byte{'x'}, len(v1))
	obj2 := put(t, mem, "key", v2)
	p := make([]byte, 1500) // reads straddle block boundaries
	failed := false
	for off := 10 * testBlock; off < len(v1); off += len(p) {
		n, err := readerAt(context.Background(), r, p, int64(off))
		if err != nil && err != io.EOF {
			if !errors.Is(err, store.ErrPrecondition) || n != 0 {
				t.Fatalf("read at %d of a replaced version: %d, %v; want 0, ErrPrecondition", off, n, err)
			}
			failed = true
			break
		}
		if !bytes.Equal(p[:n], v1[off:off+n]) {
			t.Fatalf("read at %d returned bytes of another version", off)
		}
	}
	if !failed {
		t.Fatal("every read of a replaced version succeeded: the old version cannot have been all cached")
	}
	r2 := c.Open(obj2)
	defer r2.Close()
	readSequentially(t, r2, v2, 1500)
}

func TestReadAheadSharesFetchesInFlight(t *testing.T) {
	mem, c, obj, data := setupRA(t, 100, raOptions)
	r := c.Open(obj)
	defer r.Close()
	readSequentially(t, r, data[:2000], 1000)
	quiesce(t, c)

	release, _ := holdGets(t, mem)
	done := make(chan error, 2)
	go func() {
		_, err := readerAt(context.Background(), r, make([]byte, 1000), 2000)
		done <- err
	}()
	// Some block beyond that read is being fetched ahead; another handle's
	// read of it waits for the same fetch.
	var k int64
	testkit.WaitFor(t, "a block fetched ahead", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for k = 3; k < 100; k++ {
			if c.inflight[blockKey(obj, k)] != nil {
				return true
			}
		}
		return false
	})
	other := c.Open(obj)
	defer other.Close()
	p := make([]byte, 10)
	go func() {
		_, err := readerAt(context.Background(), other, p, k*testBlock+5)
		done <- err
	}()
	waitForWaiters(t, c, obj, k, 1)
	release()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(p, data[k*testBlock+5:k*testBlock+15]) {
		t.Fatal("wrong bytes")
	}
	covering := 0
	for _, call := range mem.CallsTo("Get") {
		if call.Off <= k*testBlock && call.Off+call.Length > k*testBlock {
			covering++
		}
	}
	if covering != 1 {
		t.Errorf("%d Gets fetched block %d, want 1: %v", covering, k, gets(mem))
	}
}

func TestFailedReadAheadIsRetriedByTheRead(t *testing.T) {
	mem, c, obj, data := setupRA(t, 100, raOptions)
	var mu sync.Mutex
	failed := 0
	mem.SetFault(func(op memstore.Op) error {
		mu.Lock()
		defer mu.Unlock()
		// Fail three GETs of more than a block: fetches ahead, not the
		// reads' own single-block fetches.
		if op.Name == "Get" && op.Length > testBlock && failed < 3 {
			failed++
			return errors.New("connection reset")
		}
		return nil
	})
	r := c.Open(obj)
	defer r.Close()
	readSequentially(t, r, data, 500)
	if failed != 3 {
		t.Fatalf("%d Gets failed, want 3", failed)
	}

	// A store that keeps failing fails the read.
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Get" {
			return errors.New("connection reset")
		}
		return nil
	})
	obj2 := put(t, mem, "other", data)
	r2 := c.Open(obj2)
	defer r2.Close()
	if _, err := readerAt(context.Background(), r2, make([]byte, 10), 0); err == nil {
		t.Fatal("read succeeded although every Get fails")
	}
}

func TestReaderClose(t *testing.T) {
	mem, c, obj, data := setupRA(t, 100, raOptions)
	r := c.Open(obj)
	readSequentially(t, r, data[:2000], 1000)
	quiesce(t, c)
	release, held := holdGets(t, mem)
	go func() { _, _ = readerAt(context.Background(), r, make([]byte, 1000), 2000) }()
	testkit.WaitFor(t, "a Get in flight", func() bool { return held() > 0 })
	r.Close()
	r.Close()
	if st := c.Stats(); st.ReadAheadBytes != 0 {
		t.Errorf("closed reader holds %d bytes of budget", st.ReadAheadBytes)
	}
	if _, err := readerAt(context.Background(), r, make([]byte, 1), 0); err == nil {
		t.Error("read after Close succeeded")
	}
	release()
	c.Close() // waits for the fetches ahead to end
	if _, err := readerAt(context.Background(), c.Open(obj), make([]byte, 1), 0); err == nil {
		t.Error("read after the cache's Close succeeded")
	}
}

func TestReaderCanceledRead(t *testing.T) {
	mem, c, obj, _ := setupRA(t, 10, raOptions)
	holdGets(t, mem)
	go func() { _, _ = cacheReadAt(c, context.Background(), obj, make([]byte, 1), 0) }() // holds the fetch open
	waitForWaiters(t, c, obj, 0, 0)
	r := c.Open(obj)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := readerAt(ctx, r, make([]byte, 10), 0)
		done <- err
	}()
	waitForWaiters(t, c, obj, 0, 1)
	cancel()
	expectCanceled(t, done)
}

func TestReaderEmptyAndNoETag(t *testing.T) {
	mem, c, _, data := setupRA(t, 3, raOptions)
	empty := put(t, mem, "empty", nil)
	r := c.Open(empty)
	defer r.Close()
	if n, err := readerAt(context.Background(), r, make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("read of an empty object: %d, %v", n, err)
	}
	obj := put(t, mem, "plain", data)
	obj.ETag = ""
	r2 := c.Open(obj)
	defer r2.Close()
	mem.ResetCalls()
	readSequentially(t, r2, data, 1000)
	if got := gets(mem); len(got) != 3 || got[0] != "0+1000" {
		t.Fatalf("Gets without an ETag %v, want one direct Get per read", got)
	}
}

func TestSpanDoesNotCopy(t *testing.T) {
	_, c, obj, data := setupRA(t, 5, raOptions)
	r := c.Open(obj)
	defer r.Close()
	ctx := context.Background()
	tests := []struct {
		off, n     int64
		wantSlices int
		wantErr    error
	}{
		{0, 10, 1, nil}, {500, 1000, 2, nil}, {999, 2002, 4, nil},
		{4990, 100, 1, io.EOF}, {5000, 1, 0, io.EOF}, {100, 0, 0, nil},
	}
	for _, tt := range tests {
		sp, err := r.Span(ctx, tt.off, int(tt.n))
		var got []byte
		for _, b := range sp.Slices() {
			got = append(got, b...)
		}
		end := min(tt.off+tt.n, int64(len(data)))
		if err != tt.wantErr || len(sp.Slices()) != tt.wantSlices || sp.Len() != len(got) || (end > tt.off && !bytes.Equal(got, data[tt.off:end])) {
			t.Errorf("Span(%d, %d) = %d slices, %v; want %d, %v and the right bytes", tt.off, tt.n, len(sp.Slices()), err, tt.wantSlices, tt.wantErr)
		}
		sp.Release()
	}
	// Twice the same range: the same memory, the cached block's.
	c.blocks.Wait()
	a, err1 := r.Span(ctx, 2000, 10)
	b, err2 := r.Span(ctx, 2000, 10)
	if err1 != nil || err2 != nil || &a.Slices()[0][0] != &b.Slices()[0][0] {
		t.Errorf("Span copied the block (%v, %v)", err1, err2)
	}
	a.Release()
	b.Release()
	if _, err := r.Span(ctx, -1, 1); err == nil {
		t.Error("Span at a negative offset succeeded")
	}
}

// FuzzReader checks a Reader's answers (ReadAt and Span) against
// bytes.Reader for sequences of reads that wander between sequential and
// random.
func FuzzReader(f *testing.F) {
	f.Add(uint16(5000), uint8(100), []byte{0, 10, 0, 10, 0, 10, 0, 10, 5, 200, 0, 10})
	f.Add(uint16(999), uint8(7), []byte{1, 255, 2, 3, 1, 1, 0, 0, 9, 9})
	f.Add(uint16(64), uint8(1), []byte{0, 1, 0, 1, 0, 1, 0, 64, 0, 0})
	f.Fuzz(func(t *testing.T, size uint16, block uint8, script []byte) {
		if block == 0 {
			t.Skip()
		}
		mem := memstore.New(memstore.Options{})
		data := testkit.RandomBytes(uint64(block), int(size))
		obj := put(t, mem, "k", data)
		bs := int64(block)
		c, err := New(mem, Options{BlockSize: bs, MaxBytes: 16 * bs, ReadAheadBytes: 6 * bs, FetchSize: 3 * bs, SequentialSlack: 2 * bs})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := c.Open(obj)
		defer r.Close()
		// Each pair of script bytes is one read: a jump (0 continues where
		// the last read ended, otherwise it moves by a multiple of the
		// block size, backwards when odd) and a length.
		off := int64(0)
		for i := 0; i+1 < len(script); i += 2 {
			if j := int64(script[i]); j != 0 {
				step := j / 2 * bs
				if j%2 == 1 {
					step = -step
				}
				off = max(0, off+step)
			}
			p := make([]byte, script[i+1])
			var n int
			var err error
			if i%4 == 0 {
				n, err = readerAt(context.Background(), r, p, off)
			} else { // every other read without a copy
				var sp *Span
				sp, err = r.Span(context.Background(), off, len(p))
				if sp != nil {
					for _, b := range sp.Slices() {
						n += copy(p[n:], b)
					}
					sp.Release()
				}
				if err != nil && err != io.EOF {
					n = 0
				}
			}
			want := make([]byte, len(p))
			wn, werr := bytes.NewReader(data).ReadAt(want, off)
			if n != wn || err != werr || !bytes.Equal(p[:n], want[:wn]) {
				t.Fatalf("size %d block %d: ReadAt(%d bytes at %d) = %d, %v; want %d, %v", size, block, len(p), off, n, err, wn, werr)
			}
			off += int64(n)
		}
		if st := c.Stats(); st.ReadAheadPeak > 6*bs {
			t.Fatalf("read-ahead peak %d over the budget %d", st.ReadAheadPeak, 6*bs)
		}
	})
}
