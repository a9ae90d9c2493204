package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
)

// missing stats key and fails unless it is reported missing.
func missing(t *testing.T, m *Cache, key string) {
	t.Helper()
	if _, err := m.Stat(context.Background(), key); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat(%q) = %v, want ErrNotExist", key, err)
	}
}

// TestBurstOfMissesListsOnce: lookups of many new names in one directory
// cost two HEADs and one listing, not a HEAD each; the listing goes on
// answering while this mount creates files there, and stops once it is
// NegativeTTL old.
func TestBurstOfMissesListsOnce(t *testing.T) {
	mem, m, clk := setupMeta(t, Options{})
	ctx := context.Background()
	putMeta(t, mem, "d/existing", "x", nil)
	putMeta(t, mem, "d/sub/deep", "y", nil)
	mem.ResetCalls()

	for i := range 26 {
		missing(t, m, fmt.Sprintf("d/%c", 'a'+i))
	}
	wantCalls(t, mem, 2, 1) // two misses make a burst; then one listing
	for _, p := range []string{"d/a/", "d/nothing/"} {
		if !m.dirAbsent(p) {
			t.Errorf("dirAbsent(%q) = false with a fresh listing that lacks it", p)
		}
	}
	for _, p := range []string{"d/sub/", "d/existing"} {
		if m.dirAbsent(p) {
			t.Errorf("dirAbsent(%q) = true", p)
		}
	}

	// This mount creates files there: each is known at once, and the
	// listing still answers for the other names.
	for i := range 5 {
		key := fmt.Sprintf("d/new%d", i)
		m.Update(putMeta(t, mem, key, "z", store.Metadata{}))
		if _, err := m.Stat(ctx, key); err != nil {
			t.Fatalf("Stat(%q) after Update: %v", key, err)
		}
		missing(t, m, fmt.Sprintf("d/next%d", i))
	}
	wantCalls(t, mem, 2, 1)
	// Past StatTTL the created files are asked for again, never taken as
	// missing from the older listing.
	clk.Advance(time.Second)
	if _, err := m.Stat(ctx, "d/new0"); err != nil {
		t.Fatalf("Stat of a file this mount created, after StatTTL: %v", err)
	}
	wantCalls(t, mem, 3, 1)
	// ReadDir does not serve a listing with changes in it.
	l, err := m.ReadDir(ctx, "d/")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Object("d/new4"); !ok {
		t.Fatal("ReadDir after this mount's creates lacks one of them")
	}
	wantCalls(t, mem, 3, 2)

	// Another client's file is seen once NegativeTTL has passed since the
	// listing, like any missing name.
	putMeta(t, mem, "d/theirs", "t", nil)
	missing(t, m, "d/theirs")
	clk.Advance(2 * time.Second)
	if _, err := m.Stat(ctx, "d/theirs"); err != nil {
		t.Fatalf("another client's file after NegativeTTL: %v", err)
	}
}

// TestBurstInLargeDirectory: a directory larger than one page gets HEADs,
// and its first page is asked for once per ListTTL, not once per miss.
func TestBurstInLargeDirectory(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	for i := range 1500 {
		putMeta(t, mem, fmt.Sprintf("big/f%04d", i), "x", nil)
	}
	mem.ResetCalls()
	for i := range 20 {
		missing(t, m, fmt.Sprintf("big/new%02d", i))
	}
	wantCalls(t, mem, 20, 1)
	if m.dirAbsent("big/new00/") {
		t.Error("dirAbsent answered from a partial listing")
	}
}

// TestBurstChangesDuringListing: what this mount changes while the burst's
// listing is in flight is not taken from that listing.
func TestBurstChangesDuringListing(t *testing.T) {
	mem, m, clk := setupMeta(t, Options{})
	ctx := context.Background()
	missing(t, m, "d/a")
	missing(t, m, "d/b")

	release, started := holdCalls(t, mem, "List", true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		missing(t, m, "d/c") // lists d/ first
	}()
	testkit.WaitFor(t, "the listing in flight", func() bool { return started() == 1 })
	mem.SetFaultAfter(nil)
	m.Update(putMeta(t, mem, "d/made", "m", store.Metadata{}))
	putMeta(t, mem, "d/dir/file", "f", nil)
	m.Invalidate("d/dir/file")
	release()
	<-done

	clk.Advance(time.Second) // past StatTTL: d/made must be asked for
	if _, err := m.Stat(ctx, "d/made"); err != nil {
		t.Fatalf("a file created while the listing was in flight: %v", err)
	}
	if m.dirAbsent("d/dir/") {
		t.Error("a directory created while the listing was in flight is taken as absent")
	}
	missing(t, m, "d/d") // the rest of the listing still answers
}

// TestListingsAboveAChange: a change deep below a cached listing marks the
// subdirectory it lies in, so the listing no longer calls it absent.
func TestListingsAboveAChange(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	ctx := context.Background()
	putMeta(t, mem, "top", "x", nil)
	if _, err := m.ReadDir(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if !m.dirAbsent("x/") || !m.dirAbsent("q/") {
		t.Fatal("dirAbsent is false for directories the root listing lacks")
	}
	putMeta(t, mem, "x/y/z", "deep", nil)
	m.Invalidate("x/y/z")
	if m.dirAbsent("x/") {
		t.Error("dirAbsent(x/) after this mount wrote x/y/z")
	}
	if !m.dirAbsent("q/") {
		t.Error("the root listing stopped answering for other names")
	}
}

// TestBurstsOffWithoutTTLs: with lookups not cached, every miss is a HEAD
// and nothing is listed.
func TestBurstsOffWithoutTTLs(t *testing.T) {
	mem, m, _ := setupMeta(t, Options{})
	m.negativeTTL = time.Nanosecond
	for i := range 5 {
		missing(t, m, fmt.Sprintf("d/%d", i))
	}
	wantCalls(t, mem, 5, 0)
}

func TestChildOf(t *testing.T) {
	for _, c := range []struct{ prefix, key, want string }{
		{"a/", "a/b", "a/b"},
		{"a/", "a/b/", "a/b/"},
		{"a/", "a/b/c", "a/b/"},
		{"a/", "a/b/c/d/", "a/b/"},
		{"", "x", "x"},
		{"", "x/y", "x/"},
	} {
		if got := childOf(c.prefix, c.key); got != c.want {
			t.Errorf("childOf(%q, %q) = %q, want %q", c.prefix, c.key, got, c.want)
		}
	}
}
