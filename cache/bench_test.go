package cache

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

const benchObjectSize = 64 << 20

func benchStore(b *testing.B, size int) (*memstore.Store, store.Object) {
	b.Helper()
	mem := memstore.New(memstore.Options{})
	return mem, put(b, mem, "bench", testkit.RandomBytes(7, size))
}

// readAll reads obj through a new Reader of c in reads of n bytes.
func readAll(b *testing.B, c *Cache, obj store.Object, p []byte) {
	r := c.Open(obj)
	defer r.Close()
	for off := int64(0); off < obj.Size; off += int64(len(p)) {
		if _, err := readerAt(context.Background(), r, p, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderHot measures the cost of serving sequential reads from
// cached blocks: lookups, locking and the one copy into the caller's buffer.
func BenchmarkReaderHot(b *testing.B) {
	for _, n := range []int{128 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("read=%dKiB", n>>10), func(b *testing.B) {
			mem, obj := benchStore(b, benchObjectSize)
			c, err := New(mem, Options{MaxBytes: 2 * benchObjectSize})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			p := make([]byte, n)
			readAll(b, c, obj, p) // warm
			gets := c.Stats().Gets
			b.SetBytes(obj.Size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				readAll(b, c, obj, p)
			}
			if c.Stats().Gets != gets {
				b.Fatal("hot reads sent Gets")
			}
		})
	}
	b.Run("slices=128KiB", func(b *testing.B) {
		mem, obj := benchStore(b, benchObjectSize)
		c, err := New(mem, Options{MaxBytes: 2 * benchObjectSize})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		readAll(b, c, obj, make([]byte, 128<<10)) // warm
		b.SetBytes(obj.Size)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			r := c.Open(obj)
			for off := int64(0); off < obj.Size; off += 128 << 10 {
				sp, err := r.Span(context.Background(), off, 128<<10)
				if err != nil && err != io.EOF {
					b.Fatal(err)
				}
				sp.Release()
			}
			r.Close()
		}
	})
}

// BenchmarkReaderCold reads through a new cache each time, against the
// same bytes read with parallel 8 MiB Gets straight from the store: the
// difference is the cost of blocks, fetches and read-ahead bookkeeping
// (memstore itself costs one copy per byte in both).
func BenchmarkReaderCold(b *testing.B) {
	mem, obj := benchStore(b, benchObjectSize)
	b.Run("reader", func(b *testing.B) {
		p := make([]byte, 128<<10)
		b.SetBytes(obj.Size)
		b.ReportAllocs()
		for b.Loop() {
			c, err := New(mem, Options{})
			if err != nil {
				b.Fatal(err)
			}
			readAll(b, c, obj, p)
			c.Close()
		}
	})
	b.Run("direct", func(b *testing.B) {
		dst := make([]byte, obj.Size)
		b.SetBytes(obj.Size)
		b.ReportAllocs()
		for b.Loop() {
			if err := directGets(mem, obj, dst, 8<<20, 8); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// directGets reads obj into dst with parallel ranged Gets of chunk bytes,
// the baseline a filesystem's sequential read is held against.
func directGets(st store.Store, obj store.Object, dst []byte, chunk int64, parallel int) error {
	var g errgroup.Group
	g.SetLimit(parallel)
	for off := int64(0); off < obj.Size; off += chunk {
		g.Go(func() error {
			n := min(chunk, obj.Size-off)
			rc, err := st.Get(context.Background(), obj.Key, off, n, obj.ETag)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadFull(rc, dst[off:off+n])
			return err
		})
	}
	return g.Wait()
}

// modelStore models an S3 endpoint holding one object of Size bytes (all
// zero, so that no memory holds it): every Get waits a first-byte latency
// and then moves its bytes at a per-connection rate, and all Gets together
// at most at the endpoint's total rate. Only Get is implemented.
type modelStore struct {
	store.Store
	obj      store.Object
	latency  time.Duration
	perConn  float64 // bytes per second
	total    float64 // bytes per second
	mu       sync.Mutex
	linkFree time.Time // guarded by mu; when the endpoint's link is next idle
}

func (s *modelStore) Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error) {
	length = min(length, s.obj.Size-off)
	seconds := func(rate float64) time.Duration { return time.Duration(float64(length) / rate * float64(time.Second)) }
	now := time.Now()
	s.mu.Lock()
	s.linkFree = later(s.linkFree, now.Add(s.latency)).Add(seconds(s.total))
	done := later(s.linkFree, now.Add(s.latency+seconds(s.perConn)))
	s.mu.Unlock()
	time.Sleep(time.Until(done))
	return io.NopCloser(io.LimitReader(zeros{}, length)), nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// discardGets reads obj with parallel ranged Gets of chunk bytes into
// scratch buffers: the baseline a filesystem's sequential read is held
// against.
func discardGets(st store.Store, obj store.Object, chunk int64, parallel int) error {
	var g errgroup.Group
	g.SetLimit(parallel)
	bufs := make(chan []byte, parallel)
	for range parallel {
		bufs <- make([]byte, chunk)
	}
	for off := int64(0); off < obj.Size; off += chunk {
		g.Go(func() error {
			buf := <-bufs
			defer func() { bufs <- buf }()
			n := min(chunk, obj.Size-off)
			rc, err := st.Get(context.Background(), obj.Key, off, n, obj.ETag)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadFull(rc, buf[:n])
			return err
		})
	}
	return g.Wait()
}

// BenchmarkColdSequentialModel compares a cold sequential read of 1 GiB
// through a Reader (128 KiB reads, default options) with parallel ranged
// Gets (8 MiB, 8 at a time) against a modeled endpoint, and reports the
// Reader's throughput as a fraction of the direct one. The models are the
// local MinIO measured in the package comment (2 ms, 1.4 GB/s per
// connection, 1.8 GB/s in all) and AWS S3 as seen from one EC2 instance
// (25 ms, 90 MB/s per connection, 2.5 GB/s in all).
func BenchmarkColdSequentialModel(b *testing.B) {
	obj := store.Object{Key: "model", Size: 1 << 30, ETag: "e"}
	for _, m := range []struct {
		latency        time.Duration
		perConn, total float64
	}{
		{2 * time.Millisecond, 1.4e9, 1.8e9},
		{25 * time.Millisecond, 90e6, 2.5e9},
	} {
		b.Run(fmt.Sprintf("latency=%v", m.latency), func(b *testing.B) {
			st := &modelStore{obj: obj, latency: m.latency, perConn: m.perConn, total: m.total}
			var reader, direct time.Duration
			p := make([]byte, 128<<10)
			var gets int64
			for b.Loop() {
				start := time.Now()
				if err := discardGets(st, obj, 8<<20, 8); err != nil {
					b.Fatal(err)
				}
				direct += time.Since(start)
				c, err := New(st, Options{})
				if err != nil {
					b.Fatal(err)
				}
				start = time.Now()
				readAll(b, c, obj, p)
				reader += time.Since(start)
				gets = c.Stats().Gets
				c.Close()
			}
			b.ReportMetric(float64(gets), "gets/read")
			b.ReportMetric(direct.Seconds()/reader.Seconds(), "reader/direct")
			b.ReportMetric(float64(obj.Size)*float64(b.N)/reader.Seconds()/1e6, "reader-MB/s")
		})
	}
}
