package main

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// TestStaleStaged: only keys of the stage folder's own form, old enough,
// are taken for staged parts left behind, and deleting them leaves the
// rest.
func TestStaleStaged(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second) // deleteAbandonedStaged goes by the real clock
	clk := &testkit.Clock{}
	st := memstore.New(memstore.Options{Now: clk.Now})
	put := func(key string, age time.Duration) {
		clk.Set(now.Add(-age))
		if _, err := st.Put(ctx, key, []byte(key), store.Sum([]byte(key)), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const old, young = "p/.partfs-stage/0123456789abcdef.part65", "p/.partfs-stage/fedcba9876543210.part66"
	put(old, 2*time.Hour)
	put(young, 10*time.Minute)
	put("p/.partfs-stage/notes.txt", 5*time.Hour)              // not a staged part's key
	put("p/.partfs-stage/0123456789abcdef.part0", 5*time.Hour) // no part 0
	put("p/data/0123456789abcdef.part7", 5*time.Hour)          // not in the stage folder
	put("q/.partfs-stage/0123456789abcdef.part7", 5*time.Hour) // another mount's prefix
	clk.Set(now)

	for _, c := range []struct {
		olderThan time.Duration
		want      []string
	}{
		{time.Hour, []string{old}},
		{0, []string{old, young}},
		{3 * time.Hour, nil},
	} {
		objs, err := staleStaged(ctx, st, "p", now, c.olderThan)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.Key)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("staleStaged(older than %v) = %q, want %q", c.olderThan, got, c.want)
		}
	}

	cfg := &config{Prefix: "p/", AbortUploadsOlderThan: time.Hour}
	deleteAbandonedStaged(ctx, st, cfg, slog.New(slog.DiscardHandler))
	for key, want := range map[string]bool{old: false, young: true, "p/.partfs-stage/notes.txt": true, "p/data/0123456789abcdef.part7": true} {
		_, err := st.Stat(ctx, key)
		if exists := err == nil; exists != want {
			t.Errorf("after the mount's cleanup, %s exists = %v, want %v", key, exists, want)
		}
	}
}
