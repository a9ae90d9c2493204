package meta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// setupMeta returns a store and a Cache in front of it with a fake clock,
// TTLs of 1s (stat), 2s (negative) and 3s (listings).
func setupMeta(t *testing.T, opts Options) (*memstore.Store, *Cache, *testkit.Clock) {
	t.Helper()
	clk := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	mem := memstore.New(memstore.Options{Now: clk.Now})
	opts.StatTTL, opts.NegativeTTL, opts.ListTTL, opts.Now = time.Second, 2*time.Second, 3*time.Second, clk.Now
	return mem, New(mem, opts), clk
}

func putMeta(t *testing.T, mem *memstore.Store, key, body string, md store.Metadata) store.Object {
	t.Helper()
	obj, err := mem.Put(context.Background(), key, []byte(body), store.Sum([]byte(body)), store.PutOptions{Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	obj.Metadata = md
	return obj
}

// calls counts the store's successful calls by method.
func calls(mem *memstore.Store) map[string]int {
	n := map[string]int{}
	for _, c := range mem.Calls() {
		if c.Err == nil || errors.Is(c.Err, store.ErrNotExist) {
			n[c.Name]++
		}
	}
	return n
}

func wantCalls(t *testing.T, mem *memstore.Store, stats, lists int) {
	t.Helper()
	n := calls(mem)
	if n["Stat"] != stats || n["List"] != lists {
		t.Fatalf("store saw %d Stats and %d Lists, want %d and %d", n["Stat"], n["List"], stats, lists)
	}
}

func TestStatTTL(t *testing.T) {
	mem, m, clk := setupMeta(t, Options{})
	putMeta(t, mem, "a", "one", store.Metadata{"mode": "33188"})
	mem.ResetCalls()
	ctx := context.Background()
	for range 3 {
		obj, err := m.Stat(ctx, "a")
		if err != nil || obj.Size != 3 || obj.Metadata["mode"] != "33188" {
			t.Fatalf("Stat = %+v, %v", obj, err)
		}
	}
	wantCalls(t, mem, 1, 0)

	// Another client replaces the object: seen once the TTL has passed.
	putMeta(t, mem, "a", "two!", nil)
	clk.Advance(999 * time.Millisecond)
	if obj, _ := m.Stat(ctx, "a"); obj.Size != 3 {
		t.Fatalf("Stat within the TTL = %+v, want the cached answer", obj)
	}
	clk.Advance(time.Millisecond)
	obj, err := m.Stat(ctx, "a")
	if err != nil || obj.Size != 4 || obj.Metadata == nil || len(obj.Metadata) != 0 {
		t.Fatalf("Stat after the TTL = %+v, %v; want the new object with empty metadata", obj, err)
	}
	wantCalls(t, mem, 2, 0)
}

func TestNegativeTTL(t *testing.T) {
	mem, m, clk := setupMeta(t, Options{})
	ctx := context.Background()
	for range 3 {
		if _, err := m.Stat(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat of a missing key: %v", err)
		}
	}
	wantCalls(t, mem, 1, 0)
	putMeta(t, mem, "missing", "x", nil) // by another client
	clk.Advance(1999 * time.Millisecond)
	if _, err := m.Stat(ctx, "missing"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat within the negative TTL: %v", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := m.Stat(ctx, "missing"); err != nil {
		t.Fatalf("Stat after the negative TTL: %v", err)
	}
	wantCalls(t, mem, 2, 0)
}

func TestInvalidateAndUpdate(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	ctx := context.Background()
	putMeta(t, mem, "d/a", "one", nil)
	if _, err := m.Stat(ctx, "d/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Stat(ctx, "d/b"); !errors.Is(err, store.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := m.ReadDir(ctx, "d/"); err != nil {
		t.Fatal(err)
	}
	mem.ResetCalls()

	// This mount writes d/b and changes d/a: seen at once.
	b := putMeta(t, mem, "d/b", "bee", store.Metadata{"mtime": "1700000000"})
	m.Update(b)
	putMeta(t, mem, "d/a", "longer", nil)
	m.Invalidate("d/a")
	mem.ResetCalls()
	if obj, err := m.Stat(ctx, "d/b"); err != nil || obj.Metadata["mtime"] != "1700000000" {
		t.Fatalf("Stat after Update = %+v, %v", obj, err)
	}
	wantCalls(t, mem, 0, 0) // Update needs no request
	if obj, err := m.Stat(ctx, "d/a"); err != nil || obj.Size != 6 {
		t.Fatalf("Stat after Invalidate = %+v, %v", obj, err)
	}
	l, err := m.ReadDir(ctx, "d/")
	if err != nil || len(l.Objects) != 2 {
		t.Fatalf("ReadDir after changes = %+v, %v; want both objects", l, err)
	}
	wantCalls(t, mem, 1, 1)

	// Removing the directory forgets everything under it.
	for _, k := range []string{"d/a", "d/b"} {
		if err := mem.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	m.InvalidateDir("d/")
	if _, err := m.Stat(ctx, "d/a"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after InvalidateDir: %v", err)
	}
	if l, err := m.ReadDir(ctx, "d/"); err != nil || len(l.Objects) != 0 {
		t.Fatalf("ReadDir after InvalidateDir = %+v, %v", l, err)
	}
}

// holdCalls holds every call to the named method until release is called,
// and counts them. With after, calls are held after they took effect.
func holdCalls(t *testing.T, mem *memstore.Store, name string, after bool) (release func(), started func() int) {
	var mu sync.Mutex
	n := 0
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	hook := func(op memstore.Op) error {
		if op.Name == name {
			mu.Lock()
			n++
			mu.Unlock()
			<-ch
		}
		return nil
	}
	if after {
		mem.SetFaultAfter(hook)
	} else {
		mem.SetFault(hook)
	}
	return release, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

func TestConcurrentLookupsShareOneRequest(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	putMeta(t, mem, "a", "one", nil)
	mem.ResetCalls()
	release, started := holdCalls(t, mem, "Stat", false)
	const callers = 10
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			if _, err := m.Stat(context.Background(), "a"); err != nil {
				errs <- err
			}
		})
	}
	testkit.WaitFor(t, "every caller waiting", func() bool { return m.waiting.Load() == callers })
	if started() != 1 {
		t.Fatalf("%d Stats started", started())
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantCalls(t, mem, 1, 0)
}

// A lookup in flight while this mount changes the key neither caches its
// answer nor gives it to callers arriving after the change.
func TestInvalidateDuringLookup(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	putMeta(t, mem, "a", "one", nil)
	release, started := holdCalls(t, mem, "Stat", true)
	old := make(chan store.Object, 1)
	go func() {
		obj, _ := m.Stat(context.Background(), "a")
		old <- obj
	}()
	// The held Stat has read "one"; then this mount replaces the object.
	testkit.WaitFor(t, "a Stat in flight", func() bool { return started() == 1 })
	mem.SetFaultAfter(nil)
	putMeta(t, mem, "a", "newer", nil)
	m.Invalidate("a")
	obj, err := m.Stat(context.Background(), "a")
	if err != nil || obj.Size != 5 {
		t.Fatalf("Stat after Invalidate = %+v, %v; want the new object", obj, err)
	}
	release()
	if obj := <-old; obj.Size != 3 {
		t.Fatalf("the held Stat answered %+v, want the old object", obj)
	}
	if obj, _ := m.Stat(context.Background(), "a"); obj.Size != 5 {
		t.Fatalf("the stale answer was cached: %+v", obj)
	}
}

func TestCanceledLookup(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	putMeta(t, mem, "a", "one", nil)
	release, started := holdCalls(t, mem, "Stat", false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.Stat(ctx, "a")
		done <- err
	}()
	testkit.WaitFor(t, "a Stat in flight", func() bool { return started() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Stat: %v", err)
	}
	// The request itself goes on and its answer serves the next caller.
	release()
	testkit.WaitFor(t, "the Stat to be cached", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.stats["a"] != nil
	})
	mem.ResetCalls()
	if _, err := m.Stat(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, mem, 0, 0)
}

func TestReadDir(t *testing.T) {
	mem, m, clk := setupMeta(t, Options{})
	ctx := context.Background()
	for i := range 2500 { // three pages
		putMeta(t, mem, fmt.Sprintf("d/f%04d", i), "x", nil)
	}
	putMeta(t, mem, "d/", "", store.Metadata{"mode": "16877"})
	putMeta(t, mem, "d/sub/", "", nil)
	putMeta(t, mem, "d/other/deep", "y", nil)
	mem.ResetCalls()

	l, err := m.ReadDir(ctx, "d/")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Objects) != 2501 || len(l.Prefixes) != 2 || l.Next != "" {
		t.Fatalf("listing has %d objects and prefixes %v (next %q)", len(l.Objects), l.Prefixes, l.Next)
	}
	if _, ok := l.Object("d/f1234"); !ok || !l.Subdir("d/sub/") || !l.Subdir("d/other/") || l.Subdir("d/f0001/") {
		t.Fatal("Object or Subdir wrong")
	}
	wantCalls(t, mem, 0, 3)

	// Within the TTL: the listing again, and lookups of names it lacks,
	// cost nothing.
	if _, err := m.ReadDir(ctx, "d/"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"d/nothing", "d/nodir/", "d/f99999"} {
		if _, err := m.Stat(ctx, k); !errors.Is(err, store.ErrNotExist) {
			t.Fatalf("Stat(%q) = %v, want ErrNotExist from the listing", k, err)
		}
	}
	wantCalls(t, mem, 0, 3)
	// A listed object's metadata needs a HEAD; a marker folded into a
	// prefix too.
	for _, k := range []string{"d/f0001", "d/sub/"} {
		if _, err := m.Stat(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	wantCalls(t, mem, 2, 3)

	// After the TTL, the listing is fetched again; the version of d/f0001
	// is known, so its metadata comes without a HEAD.
	clk.Advance(3 * time.Second)
	mem.ResetCalls()
	l, err = m.ReadDir(ctx, "d/")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := l.Object("d/f0001"); o.Metadata == nil {
		t.Error("known version listed without its metadata")
	}
	if o, _ := l.Object("d/f0002"); o.Metadata != nil {
		t.Error("unknown version listed with metadata")
	}
	if _, err := m.Stat(ctx, "d/f0001"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, mem, 0, 3)
}

func TestMetaBounds(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{MaxStats: 10, MaxListed: 25})
	ctx := context.Background()
	for i := range 30 {
		putMeta(t, mem, fmt.Sprintf("big/%02d", i), "x", nil)
		if i < 5 {
			putMeta(t, mem, fmt.Sprintf("small%d/x", i), "x", nil)
		}
	}
	for i := range 30 {
		if _, err := m.Stat(ctx, fmt.Sprintf("big/%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	l, err := m.ReadDir(ctx, "big/")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Objects) < 25 || l.Next == "" {
		t.Fatalf("a directory over MaxListed: %d objects, next %q", len(l.Objects), l.Next)
	}
	for i := range 5 {
		if _, err := m.ReadDir(ctx, fmt.Sprintf("small%d/", i)); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.stats) > 10 || m.statLRU.Len() != len(m.stats) {
		t.Errorf("%d Stat results kept, bound 10", len(m.stats))
	}
	if m.dirs["big/"] != nil {
		t.Error("an incomplete listing was cached")
	}
	if m.listed > 25 || len(m.dirs) != 5 {
		t.Errorf("%d listings of %d entries kept, bound 25", len(m.dirs), m.listed)
	}
}

func TestParent(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"a", ""}, {"a/", ""}, {"a/b", "a/"}, {"a/b/", "a/"}, {"a/b/c", "a/b/"}, {"", ""},
	} {
		if got := parent(tt.key); got != tt.want {
			t.Errorf("parent(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}
