package writeback

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

const mib = 1 << 20

func newWriter(t *testing.T, st store.Store, opts Options) *Writer {
	t.Helper()
	w, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// writeSeq writes data in chunk-sized sequential writes, as cp does.
func writeSeq(t *testing.T, f *File, data []byte, off int64, chunk int) {
	t.Helper()
	for i := 0; i < len(data); i += chunk {
		end := min(i+chunk, len(data))
		if n, err := f.WriteAt(context.Background(), data[i:end], off+int64(i)); err != nil || n != end-i {
			t.Fatalf("write at %d: n=%d err=%v", off+int64(i), n, err)
		}
	}
}

func mustSync(t *testing.T, f *File) store.Object {
	t.Helper()
	obj, err := f.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return obj
}

func stored(t *testing.T, st *memstore.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, 0, -1, "")
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertStored(t *testing.T, st *memstore.Store, key string, want []byte) {
	t.Helper()
	if got := stored(t, st, key); !bytes.Equal(got, want) {
		t.Fatalf("%q: stored %d bytes (md5 %x), want %d bytes (md5 %x)", key, len(got), md5.Sum(got), len(want), md5.Sum(want))
	}
}

func assertNoUploads(t *testing.T, st *memstore.Store) {
	t.Helper()
	if ups := st.Uploads(); len(ups) != 0 {
		t.Fatalf("%d multipart uploads left behind: %+v", len(ups), ups)
	}
}

func TestSmallFileIsOnePut(t *testing.T) {
	for _, size := range []int{0, 1, 1024, 5*mib - 1, 5 * mib} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			st := memstore.New(memstore.Options{})
			w := newWriter(t, st, Options{PartSize: 5 * mib})
			data := testkit.RandomBytes(uint64(size), size)
			f := w.Open("small", nil, store.PutOptions{Metadata: store.Metadata{"mode": "33188"}})
			writeSeq(t, f, data, 0, 128<<10)
			obj := mustSync(t, f)
			puts := st.CallsTo("Put")
			if len(puts) != 1 || len(st.CallsTo("CreateMultipart")) != 0 {
				t.Fatalf("want exactly one Put and no multipart upload, got calls %v", st.Calls())
			}
			if puts[0].MD5 != md5.Sum(data) {
				t.Fatalf("Put carried MD5 %x, body MD5 %x", puts[0].MD5, md5.Sum(data))
			}
			assertStored(t, st, "small", data)
			if obj.Size != int64(size) || f.Dirty() {
				t.Fatalf("after sync: size %d dirty %v", obj.Size, f.Dirty())
			}
			if got, _ := st.Stat(context.Background(), "small"); got.Metadata["mode"] != "33188" {
				t.Fatalf("metadata not stored: %v", got.Metadata)
			}
		})
	}
}

func TestSequentialWriteStreamsNumberedParts(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 8 * mib, BufferBytes: 64 * mib})
	data := testkit.RandomBytes(1, 64*mib+123)
	f := w.Open("big", nil, store.PutOptions{})
	writeSeq(t, f, data[:40*mib], 0, mib)

	// Parts go out while the application is still writing.
	deadline := time.Now().Add(10 * time.Second)
	for len(st.CallsTo("UploadPart")) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(st.CallsTo("UploadPart")); n < 4 {
		t.Fatalf("after 40 MiB written, %d parts sent; want 4 before close", n)
	}
	writeSeq(t, f, data[40*mib:], 40*mib, mib)
	obj := mustSync(t, f)

	assertStored(t, st, "big", data)
	if len(st.CallsTo("CreateMultipart")) != 1 || len(st.CallsTo("CompleteMultipart")) != 1 || len(st.CallsTo("Put")) != 0 {
		t.Fatalf("want one CreateMultipart and one Complete, calls: %v", st.Calls())
	}
	parts := st.CallsTo("UploadPart")
	if len(parts) != 9 {
		t.Fatalf("want 9 parts (8 × 8 MiB and the 123-byte tail), got %d", len(parts))
	}
	seen := map[int32]bool{}
	for _, c := range parts {
		seen[c.Part] = true
		off := int64(c.Part-1) * 8 * mib
		body := data[off:min(off+8*mib, int64(len(data)))]
		if c.Size != int64(len(body)) || c.MD5 != md5.Sum(body) {
			t.Fatalf("part %d: size %d md5 %x, want %d md5 %x", c.Part, c.Size, c.MD5, len(body), md5.Sum(body))
		}
	}
	for n := int32(1); n <= 9; n++ {
		if !seen[n] {
			t.Fatalf("part %d never sent", n)
		}
	}
	if !strings.HasSuffix(obj.ETag, "-9") {
		t.Fatalf("ETag %q, want the multipart form ending in -9", obj.ETag)
	}
	assertNoUploads(t, st)
	if s := w.Stats(); s.Used != 0 || s.Peak > 64*mib {
		t.Fatalf("budget after sync: %+v", s)
	}
}

func TestLastPartBoundary(t *testing.T) {
	// With room for three parts, a file that ends exactly at the end of part
	// three is stored; one more byte is refused.
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib, maxParts: 3})
	data := testkit.RandomBytes(3, 15*mib)
	f := w.Open("edge", nil, store.PutOptions{})
	writeSeq(t, f, data, 0, mib)
	if _, err := f.WriteAt(context.Background(), []byte{1}, 15*mib); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("write past part 3: err %v, want ErrTooLarge", err)
	}
	mustSync(t, f)
	assertStored(t, st, "edge", data)
	if got := w.Plan().MaxSize(); got != 15*mib {
		t.Fatalf("MaxSize %d, want 15 MiB", got)
	}
}

func TestHolesAndOverwritesInBuffer(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := w.Open("holes", nil, store.PutOptions{})
	want := make([]byte, 12*mib)
	put := func(off int, b []byte) {
		t.Helper()
		if _, err := f.WriteAt(context.Background(), b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], b)
	}
	put(0, []byte("head"))
	put(3*mib, testkit.RandomBytes(4, 100))   // a hole, in the first part
	put(2, []byte("XY"))                      // overwrite inside the buffer
	put(12*mib-7, []byte("tail..."))          // a hole spanning a sealed part
	put(11*mib, testkit.RandomBytes(5, 1000)) // back inside the current buffer
	mustSync(t, f)
	assertStored(t, st, "holes", want)
}

func TestWriteIntoSentPartCheckpoints(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := w.Open("k", nil, store.PutOptions{})
	data := testkit.RandomBytes(6, 12*mib)
	writeSeq(t, f, data, 0, mib)
	// Part 1 has gone out and its bytes are no longer at hand: the file is
	// made durable, then edited further.
	if _, err := f.WriteAt(context.Background(), []byte("x"), 10); err != nil {
		t.Fatal(err)
	}
	if n := len(st.CallsTo("CompleteMultipart")); n != 1 {
		t.Fatalf("%d completes, want the one checkpoint", n)
	}
	data[10] = 'x'
	mustSync(t, f)
	assertStored(t, st, "k", data)
	assertNoUploads(t, st)
}

func TestFailedUploadIsAbortedAndReported(t *testing.T) {
	st := memstore.New(memstore.Options{})
	if _, err := st.Put(context.Background(), "k", []byte("old"), md5.Sum([]byte("old")), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("injected")
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPart" {
			return boom
		}
		return nil
	})
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := w.Open("k", nil, store.PutOptions{})
	data := testkit.RandomBytes(7, 12*mib)
	for off := 0; off < len(data); off += mib {
		if _, err := f.WriteAt(context.Background(), data[off:off+mib], int64(off)); err != nil {
			break // a later write may already see the failure
		}
	}
	if _, err := f.Sync(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("sync: %v, want the injected failure", err)
	}
	assertNoUploads(t, st)
	assertStored(t, st, "k", []byte("old"))
	if _, err := f.WriteAt(context.Background(), []byte("x"), 0); err == nil {
		t.Fatal("write after a reported failure succeeded")
	}
	if _, err := f.Sync(context.Background()); err == nil {
		t.Fatal("second sync after a failure succeeded")
	}
	// O_TRUNC starts anew.
	st.SetFault(nil)
	if err := f.Truncate(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	writeSeq(t, f, []byte("new"), 0, 3)
	mustSync(t, f)
	assertStored(t, st, "k", []byte("new"))
	if s := w.Stats(); s.Used != 0 {
		t.Fatalf("budget leaked: %+v", s)
	}
}

func TestTransientFailuresAreRetriedWithSameBytes(t *testing.T) {
	st := memstore.New(memstore.Options{})
	var mu sync.Mutex
	tries := map[int32]int{}
	st.SetFault(func(op memstore.Op) error {
		if op.Name != "UploadPart" && op.Name != "CompleteMultipart" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tries[op.Part]++
		if tries[op.Part]%2 == 1 {
			return fmt.Errorf("503 SlowDown: %w", store.ErrTransient)
		}
		return nil
	})
	retrying := store.WithRetry(st, store.RetryOptions{Base: time.Millisecond, Max: 5 * time.Millisecond})
	w := newWriter(t, retrying, Options{PartSize: 5 * mib})
	data := testkit.RandomBytes(8, 23*mib)
	f := w.Open("k", nil, store.PutOptions{})
	writeSeq(t, f, data, 0, mib)
	mustSync(t, f)
	assertStored(t, st, "k", data)
	assertNoUploads(t, st)
}

func TestBudgetBoundsBufferedBytes(t *testing.T) {
	st := memstore.New(memstore.Options{})
	st.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPart" {
			time.Sleep(5 * time.Millisecond) // a slow server, so writers must wait
		}
		return nil
	})
	const budget = 20 * mib
	w := newWriter(t, st, Options{PartSize: 5 * mib, BufferBytes: budget, Concurrency: 2})
	var wg sync.WaitGroup
	files := make([][]byte, 8)
	errs := make(chan error, len(files))
	for i := range files {
		files[i] = testkit.RandomBytes(uint64(100+i), 23*mib)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := w.Open(fmt.Sprint("f", i), nil, store.PutOptions{})
			for off := 0; off < len(files[i]); off += 256 << 10 {
				end := min(off+256<<10, len(files[i]))
				if _, err := f.WriteAt(context.Background(), files[i][off:end], int64(off)); err != nil {
					errs <- err
					return
				}
			}
			if _, err := f.Sync(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, data := range files {
		assertStored(t, st, fmt.Sprint("f", i), data)
	}
	if s := w.Stats(); s.Peak > budget || s.Used != 0 {
		t.Fatalf("budget %d: peak %d, used after %d", budget, s.Peak, s.Used)
	}
}

func TestExhaustedBudgetFailsInsteadOfHanging(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib, BufferBytes: 10 * mib, StallTimeout: 200 * time.Millisecond})
	// Three files each hold a partly filled 4 MiB buffer: no part can seal,
	// no upload runs, and the third cannot get memory.
	var err error
	for i := 0; i < 3 && err == nil; i++ {
		f := w.Open(fmt.Sprint("f", i), nil, store.PutOptions{})
		_, err = f.WriteAt(context.Background(), make([]byte, 4*mib), 0)
	}
	if !errors.Is(err, ErrBufferExhausted) {
		t.Fatalf("err %v, want ErrBufferExhausted", err)
	}
}

func TestSyncThenKeepWriting(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	data := testkit.RandomBytes(9, 19*mib)
	f := w.Open("log", nil, store.PutOptions{})
	writeSeq(t, f, data[:12*mib], 0, mib)
	mustSync(t, f)
	assertStored(t, st, "log", data[:12*mib])
	st.ResetCalls()
	writeSeq(t, f, data[12*mib:], 12*mib, mib)
	mustSync(t, f)
	// Parts 1 and 2 are copied server-side; part 3 holds 2 stored MiB and
	// the new bytes, so those 2 MiB are read back and merged.
	copied, got := byteCounts(st)
	if copied != 10*mib || got != 2*mib {
		t.Fatalf("after fsync: copied %d bytes server-side and downloaded %d, want 10 MiB and 2 MiB", copied, got)
	}
	assertStored(t, st, "log", data)
	assertNoUploads(t, st)
}

func TestAppendToLargeObjectCopiesServerSide(t *testing.T) {
	st := memstore.New(memstore.Options{})
	old := testkit.RandomBytes(10, 20*mib)
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := openStored(t, st, w, "k", old)
	extra := testkit.RandomBytes(11, mib)
	st.ResetCalls()
	writeSeq(t, f, extra, int64(len(old)), 128<<10)
	mustSync(t, f)
	var sent int64
	for _, c := range st.CallsTo("UploadPart") {
		sent += c.Size
	}
	if sent != int64(len(extra)) || len(st.CallsTo("Get")) != 0 {
		t.Fatalf("sent %d bytes and %d GETs, want only the 1 MiB appended and no download", sent, len(st.CallsTo("Get")))
	}
	assertStored(t, st, "k", append(append([]byte{}, old...), extra...))
}

// byteCounts sums the bytes copied server-side and the bytes downloaded.
func byteCounts(st *memstore.Store) (copied, got int64) {
	for _, c := range st.CallsTo("UploadPartCopy") {
		copied += c.Length
	}
	for _, c := range st.CallsTo("Get") {
		got += c.Size
	}
	return copied, got
}

func TestOverwriteInsideLargeObject(t *testing.T) {
	// dd conv=notrunc into the middle: only the parts touched are sent, the
	// rest is copied server-side, and only the untouched ends of the
	// touched parts are read back.
	st := memstore.New(memstore.Options{})
	old := testkit.RandomBytes(16, 40*mib+77)
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := openStored(t, st, w, "k", old)
	patch := testkit.RandomBytes(17, 7*mib)
	st.ResetCalls()
	writeSeq(t, f, patch, 12*mib, 256<<10) // parts 3 and 4, [10, 20) MiB
	mustSync(t, f)
	want := append([]byte{}, old...)
	copy(want[12*mib:], patch)
	copied, got := byteCounts(st)
	if copied != int64(len(old))-10*mib || got != 3*mib {
		t.Fatalf("copied %d, downloaded %d: want everything but parts 3-4 copied and 3 MiB read", copied, got)
	}
	assertStored(t, st, "k", want)
	assertNoUploads(t, st)
}

func TestEditSmallObjectInMemory(t *testing.T) {
	st := memstore.New(memstore.Options{})
	old := testkit.RandomBytes(12, 100<<10)
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := openStored(t, st, w, "k", old)
	want := append([]byte{}, old...)
	copy(want[5000:], "patched")
	if _, err := f.WriteAt(context.Background(), []byte("patched"), 5000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(context.Background(), 90<<10); err != nil {
		t.Fatal(err)
	}
	want = want[:90<<10]
	mustSync(t, f)
	assertStored(t, st, "k", want)
}

func TestReadOwnWrites(t *testing.T) {
	st := memstore.New(memstore.Options{})
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	data := testkit.RandomBytes(13, 12*mib)
	f := w.Open("k", nil, store.PutOptions{})
	writeSeq(t, f, data, 0, mib)
	read := func(off int64, n int) []byte {
		t.Helper()
		p := make([]byte, n)
		got, err := f.ReadAt(context.Background(), p, off)
		if err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		return p[:got]
	}
	if got := read(11*mib, 4096); !bytes.Equal(got, data[11*mib:11*mib+4096]) {
		t.Fatal("read from the buffer differs")
	}
	// Bytes in parts already sent: the read makes the file durable first.
	if got := read(mib, 4096); !bytes.Equal(got, data[mib:mib+4096]) {
		t.Fatal("read from a sent part differs")
	}
	assertStored(t, st, "k", data)
	// Writing goes on after that, and a size past the end reads as zeros.
	writeSeq(t, f, []byte("more"), int64(len(data)), 4)
	if err := f.Truncate(context.Background(), int64(len(data))+10); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, data...), "more"...), make([]byte, 6)...)
	if got := read(int64(len(data))-2, 64); !bytes.Equal(got, want[len(data)-2:]) {
		t.Fatalf("tail read %q, want %q", got, want[len(data)-2:])
	}
	mustSync(t, f)
	assertStored(t, st, "k", want)
}

func TestDiscardLeavesOldObject(t *testing.T) {
	st := memstore.New(memstore.Options{})
	old := []byte("the old object")
	if _, err := st.Put(context.Background(), "k", old, md5.Sum(old), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := w.Open("k", nil, store.PutOptions{})
	writeSeq(t, f, testkit.RandomBytes(14, 20*mib), 0, mib)
	f.Discard()
	assertStored(t, st, "k", old)
	assertNoUploads(t, st)
	if s := w.Stats(); s.Used != 0 {
		t.Fatalf("budget leaked: %+v", s)
	}
}

func TestPartTenThousandExactly(t *testing.T) {
	// S3's 10,000 part numbers, with parts shrunk to 1 KiB so that the whole
	// range fits in memory: a file ending exactly at the end of part 10,000
	// is stored, one more byte is refused.
	const part = 1 << 10
	st := memstore.New(memstore.Options{MinPartSize: part})
	w := newWriter(t, st, Options{PartSize: part, BufferBytes: 2 * part, Concurrency: 8, minPartSize: part})
	if got := w.Plan().MaxSize(); got != store.MaxParts*part {
		t.Fatalf("MaxSize %d, want %d", got, store.MaxParts*part)
	}
	data := testkit.RandomBytes(15, store.MaxParts*part)
	f := w.Open("k", nil, store.PutOptions{})
	writeSeq(t, f, data, 0, 64<<10)
	if _, err := f.WriteAt(context.Background(), []byte{1}, int64(len(data))); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("write past part 10,000: err %v, want ErrTooLarge", err)
	}
	obj := mustSync(t, f)
	if !strings.HasSuffix(obj.ETag, fmt.Sprintf("-%d", store.MaxParts)) {
		t.Fatalf("ETag %q, want 10,000 parts", obj.ETag)
	}
	assertStored(t, st, "k", data)
}

// openStored stores data as key and opens it for editing, as an open
// without O_TRUNC does.
func openStored(t *testing.T, st *memstore.Store, w *Writer, key string, data []byte) *File {
	t.Helper()
	obj, err := st.Put(context.Background(), key, data, md5.Sum(data), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Size = int64(len(data))
	return w.Open(key, &obj, store.PutOptions{})
}

func TestReadModifyWriteFetchesPartOnce(t *testing.T) {
	st := memstore.New(memstore.Options{})
	old := testkit.RandomBytes(18, 3*mib)
	w := newWriter(t, st, Options{PartSize: 5 * mib})
	f := openStored(t, st, w, "db", old)
	if _, err := f.WriteAt(context.Background(), []byte("page"), 4096); err != nil {
		t.Fatal(err)
	}
	st.ResetCalls()
	p := make([]byte, 4096)
	for off := int64(0); off < int64(len(old)); off += 64 << 10 {
		if _, err := f.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
	}
	// One GET each side of the page written, then none.
	if n := len(st.CallsTo("Get")); n != 2 {
		t.Fatalf("%d GETs for reads across a 3 MiB file being edited, want 2", n)
	}
}
