package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
)

// The read path's defaults that these tests wait out or budget for: the
// metadata cache's stat TTL and the kernel's attribute timeout (fs.Options,
// 1 s each), and the block cache's read-ahead budget (cache.Options).
const (
	defaultStatTTL     = time.Second
	defaultAttrTimeout = time.Second
	defaultReadAhead   = 64 * miB
)

// generatedPartSize is the part size of generated objects.
const generatedPartSize = 8 * miB

// generated describes a large object whose bytes need not be kept: every
// part is one block of pseudo-random bytes with the part's number written
// over its first 8 bytes, so that parts differ and a misplaced range shows.
type generated struct {
	block []byte // generatedPartSize bytes
	size  int64
}

func newGenerated(seed uint64, size int64) generated {
	return generated{block: testkit.RandomBytes(seed, generatedPartSize), size: size}
}

// part returns part i (from 0) in buf, which holds generatedPartSize bytes.
func (g generated) part(buf []byte, i int64) []byte {
	n := min(generatedPartSize, g.size-i*generatedPartSize)
	p := buf[:n]
	copy(p, g.block)
	var stamp [8]byte
	for j := range stamp {
		stamp[j] = byte(uint64(i+1) >> (8 * j))
	}
	copy(p, stamp[:min(8, n)])
	return p
}

// at fills p with the object's bytes at off.
func (g generated) at(p []byte, off int64) {
	for len(p) > 0 {
		i := off / generatedPartSize
		in := off - i*generatedPartSize
		n := copy(p, g.block[in:min(generatedPartSize, g.size-i*generatedPartSize)])
		for j := in; j < 8 && j-in < int64(n); j++ {
			p[j-in] = byte(uint64(i+1) >> (8 * j))
		}
		p, off = p[n:], off+int64(n)
	}
}

// upload stores the object as key with parts uploaded 8 at a time.
func (g generated) upload(ctx context.Context, st store.Store, key string) error {
	id, err := st.CreateMultipart(ctx, key, store.PutOptions{})
	if err != nil {
		return err
	}
	n := (g.size + generatedPartSize - 1) / generatedPartSize
	parts := make([]store.Part, n)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for i := range n {
		eg.Go(func() error {
			body := g.part(make([]byte, generatedPartSize), i)
			p, err := st.UploadPart(ectx, key, id, int32(i+1), body, store.Sum(body))
			parts[i] = p
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		_ = st.AbortMultipart(ctx, key, id)
		return err
	}
	_, err = st.CompleteMultipart(ctx, key, id, parts, store.Condition{})
	return err
}

// dropPages makes the kernel forget its cached pages of the file at path,
// so that the next reads reach partfs (a second pass that the page cache
// would otherwise answer). It affects that file only, unlike
// /proc/sys/vm/drop_caches.
func dropPages(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		tb.Fatalf("fadvise DONTNEED %s: %v", path, err)
	}
}

// gets counts the proxy's successful GETs of key.
func (e *env) gets(key string) int {
	e.settle()
	n := 0
	for _, r := range e.proxy.Ops(s3proxy.OpGetObject) {
		if r.Key == key && r.Status/100 == 2 {
			n++
		}
	}
	return n
}

// TestWarmReReadNoGets reads a file twice through the mount, the kernel's
// pages dropped in between: the second pass is served by the block cache
// and sends no GET.
func TestWarmReReadNoGets(t *testing.T) {
	e := newEnv(t)
	body := testkit.RandomBytes(31, 48*miB+123)
	e.put("warm.bin", body)
	m := e.mount(mountConfig{extraArgs: []string{"--cache-size", "128MiB"}})
	p := m.path("warm.bin")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("cold read: %d bytes, %v", len(got), err)
	}
	cold := e.gets("warm.bin")
	if cold == 0 {
		t.Fatal("the cold read sent no GET")
	}
	e.proxy.Reset()
	dropPages(t, p)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("warm read: %d bytes, %v", len(got), err)
	}
	if n := e.gets("warm.bin"); n != 0 {
		t.Errorf("warm re-read sent %d GETs (the cold read %d), want none", n, cold)
	}
}

// TestReadMemoryBounded reads a 4 GiB object with --cache-size 256MiB and
// checks partfs's peak RSS against the cache size plus the read-ahead budget
// plus memoryOverhead (the binary, the runtime, go-fuse's request buffers,
// HTTP state). Like TestWriteMemoryBounded it runs the plain build, talking
// to MinIO directly.
func TestReadMemoryBounded(t *testing.T) {
	const size, cacheSize = 4 * giB, 256 * miB
	e := newEnv(t)
	g := newGenerated(32, size)
	if err := g.upload(e.ctx(), directStore(t, e.srv, e.bucket), "huge.bin"); err != nil {
		t.Fatal(err)
	}
	m := e.mount(mountConfig{plain: true, direct: true, extraArgs: []string{"--cache-size", sizeArg(cacheSize)}})
	idle := m.vmHWM()

	f, err := os.Open(m.path("huge.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, want := make([]byte, miB), make([]byte, miB)
	var off int64
	for {
		n, err := io.ReadFull(f, buf)
		g.at(want[:n], off)
		if !bytes.Equal(buf[:n], want[:n]) {
			t.Fatalf("bytes at %d differ from the object's", off)
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if off != size {
		t.Fatalf("read %d bytes, want %d", off, size)
	}
	peak := m.vmHWM()
	limit := cacheSize + defaultReadAhead + memoryOverhead
	t.Logf("partfs VmHWM: %.1f MiB idle, %.1f MiB after reading 4 GiB (--cache-size 256MiB; limit %.0f MiB)",
		float64(idle)/float64(miB), float64(peak)/float64(miB), float64(limit)/float64(miB))
	if peak > limit {
		t.Errorf("peak RSS %.1f MiB exceeds --cache-size + read-ahead budget + overhead = %.0f MiB",
			float64(peak)/float64(miB), float64(limit)/float64(miB))
	}
}

// uniform reports whether p holds only the byte b.
func uniform(p []byte, b byte) bool {
	return bytes.IndexFunc(p, func(r rune) bool { return r != rune(b) }) < 0
}

// readVersion reads the file at path whole through a fresh descriptor and
// returns the byte every read byte equals, failing the test on a mix. ok is
// false when the read failed with ESTALE (the version it opened was
// replaced before it was read), which is allowed.
func readVersion(t *testing.T, path string) (b byte, n int, ok bool) {
	t.Helper()
	got, err := os.ReadFile(path)
	if errors.Is(err, syscall.ESTALE) {
		return 0, 0, false
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(got) == 0 {
		t.Fatalf("read %s: empty", path)
	}
	if !uniform(got, got[0]) {
		t.Fatalf("read %s: %d bytes mixing versions (first byte %q)", path, len(got), got[0])
	}
	return got[0], len(got), true
}

// TestReplacedObjectSeenAfterTTL replaces an object through the S3 API:
// opens in the following moment see the old or the new version, whole; an
// open after the stat TTL (and the kernel's attribute timeout, which bounds
// how long the kernel trusts the old size) sees the new one.
func TestReplacedObjectSeenAfterTTL(t *testing.T) {
	e := newEnv(t)
	oldBody, newBody := bytes.Repeat([]byte{'A'}, int(3*miB)), bytes.Repeat([]byte{'B'}, int(4*miB+5))
	e.put("v.bin", oldBody)
	m := e.mount(mountConfig{})
	p := m.path("v.bin")
	if b, n, ok := readVersion(t, p); !ok || b != 'A' || n != len(oldBody) {
		t.Fatalf("first read: %q × %d (%v)", b, n, ok)
	}
	e.put("v.bin", newBody)
	replaced := time.Now()
	for time.Since(replaced) < defaultStatTTL {
		readVersion(t, p) // either version, whole
	}
	time.Sleep(time.Until(replaced.Add(defaultStatTTL + defaultAttrTimeout + 200*time.Millisecond)))
	if b, n, ok := readVersion(t, p); !ok || b != 'B' || n != len(newBody) {
		t.Errorf("read after the TTL: %q × %d (%v); want the new version, %d bytes", b, n, ok, len(newBody))
	}
}

// TestReadsNeverMixVersions keeps replacing an object through the S3 API
// with versions of the same size while the mount reads it through fresh
// descriptors: every read returns one version whole, or ESTALE.
func TestReadsNeverMixVersions(t *testing.T) {
	e := newEnv(t)
	const size = 2*miB + 3
	bodies := [][]byte{bytes.Repeat([]byte{'A'}, int(size)), bytes.Repeat([]byte{'B'}, int(size))}
	e.put("flip.bin", bodies[0])
	m := e.mount(mountConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ctx.Err() == nil; i++ {
			key := "flip.bin"
			if _, err := e.s3.PutObject(ctx, putInput(e.bucket, key, bodies[i%2])); err != nil && ctx.Err() == nil {
				t.Errorf("put: %v", err)
				return
			}
		}
	})
	seen := map[byte]int{}
	stale := 0
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		b, n, ok := readVersion(t, m.path("flip.bin"))
		if !ok {
			stale++
			continue
		}
		if int64(n) != size {
			t.Fatalf("read %d bytes, want %d", n, size)
		}
		seen[b]++
	}
	cancel()
	wg.Wait()
	t.Logf("reads: %d of version A, %d of version B, %d ESTALE", seen['A'], seen['B'], stale)
	// Which versions the loop saw is luck; the last one must show.
	e.put("flip.bin", bodies[1])
	time.Sleep(defaultStatTTL + 200*time.Millisecond)
	if b, _, ok := readVersion(t, m.path("flip.bin")); !ok || b != 'B' {
		t.Errorf("read after the last replacement and the TTL: %q (%v), want version B", b, ok)
	}
}

func putInput(bucket, key string, body []byte) *s3.PutObjectInput {
	return &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}
}
