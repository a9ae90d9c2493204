package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// startUploads starts one upload per key, each at the given age before now.
func startUploads(t *testing.T, st *memstore.Store, clk *testkit.Clock, now time.Time, ages map[string]time.Duration) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for key, age := range ages {
		clk.Set(now.Add(-age))
		id, err := st.CreateMultipart(context.Background(), key, store.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[key] = id
	}
	clk.Set(now)
	return ids
}

func keysOf(ups []store.Upload) []string {
	var keys []string
	for _, u := range ups {
		keys = append(keys, u.Key)
	}
	sort.Strings(keys)
	return keys
}

func TestStaleUploads(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ups := []store.Upload{
		{Key: "old", UploadID: "1", Initiated: now.Add(-48 * time.Hour)},
		{Key: "day", UploadID: "2", Initiated: now.Add(-24 * time.Hour)},
		{Key: "new", UploadID: "3", Initiated: now.Add(-time.Minute)},
		{Key: "future", UploadID: "4", Initiated: now.Add(time.Minute)}, // the server's clock runs ahead
		{Key: "live-old", UploadID: "5", Initiated: now.Add(-72 * time.Hour)},
	}
	live := map[string]bool{"5": true}
	tests := []struct {
		olderThan time.Duration
		stale     string
	}{
		{0, "day future new old"},
		{24 * time.Hour, "day old"},
		{time.Hour, "day old"},
		{30 * time.Second, "day new old"},
		{100 * time.Hour, ""},
	}
	for _, tt := range tests {
		stale, kept := staleUploads(ups, now, tt.olderThan, live)
		if got := strings.Join(keysOf(stale), " "); got != tt.stale {
			t.Errorf("older than %v: stale %q, want %q", tt.olderThan, got, tt.stale)
		}
		if len(stale)+len(kept) != len(ups) {
			t.Errorf("older than %v: %d stale + %d kept of %d", tt.olderThan, len(stale), len(kept), len(ups))
		}
		for _, u := range stale {
			if live[u.UploadID] {
				t.Errorf("older than %v: live upload %s is stale", tt.olderThan, u.Key)
			}
		}
	}
}

func TestAbortAbandoned(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	clk := testkit.NewClock(now)
	mem := memstore.New(memstore.Options{Now: clk.Now})
	startUploads(t, mem, clk, now, map[string]time.Duration{
		"data/crashed.bin":  3 * time.Hour,
		"data/writing.bin":  10 * time.Second,
		"other/crashed.bin": 3 * time.Hour,
	})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := &config{Prefix: "data/", AbortUploadsOlderThan: time.Hour}

	abortAbandoned(context.Background(), mem, cfg, log)
	ups, err := mem.ListMultipart(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(ups), " "); got != "data/writing.bin other/crashed.bin" {
		t.Errorf("after the cleanup at mount: %q left; want the young upload and the one outside the prefix", got)
	}
	if !strings.Contains(logs.String(), "aborted=1") {
		t.Errorf("log: %s", logs.String())
	}

	// Off, and read-only mounts, abort nothing.
	for _, c := range []*config{{Prefix: "", AbortUploadsOlderThan: -1}, {Prefix: "", ReadOnly: true}} {
		abortAbandoned(context.Background(), mem, c, log)
		if ups, _ := mem.ListMultipart(context.Background(), ""); len(ups) != 2 {
			t.Errorf("%+v aborted uploads: %d left", *c, len(ups))
		}
	}
	// Age 0 takes every upload under the prefix.
	abortAbandoned(context.Background(), mem, &config{Prefix: "data/"}, log)
	if ups, _ := mem.ListMultipart(context.Background(), ""); strings.Join(keysOf(ups), " ") != "other/crashed.bin" {
		t.Errorf("age 0 left %q", keysOf(ups))
	}
}

func TestAbortUploads(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	ctx := context.Background()
	id, err := mem.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ups := []store.Upload{{Key: "k", UploadID: id}, {Key: "gone", UploadID: "no-such-upload"}}
	n, err := abortUploads(ctx, mem, ups)
	if err != nil || n != 2 {
		t.Errorf("abortUploads = %d, %v; want 2 (an upload already gone counts)", n, err)
	}
}

func TestLiveUploads(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	live := newLiveUploads(mem)
	a, _ := live.CreateMultipart(ctx, "a", store.PutOptions{})
	b, _ := live.CreateMultipart(ctx, "b", store.PutOptions{})
	c, _ := live.CreateMultipart(ctx, "c", store.PutOptions{})
	if got := live.list(); len(got) != 3 || got[0].Key != "a" || got[0].UploadID != a {
		t.Fatalf("list = %+v", got)
	}
	part := bytes.Repeat([]byte{1}, 100)
	p, err := live.UploadPart(ctx, "a", a, 1, part, store.Sum(part))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.CompleteMultipart(ctx, "a", a, []store.Part{p}, store.Condition{}); err != nil {
		t.Fatal(err)
	}
	if err := live.AbortMultipart(ctx, "b", b); err != nil {
		t.Fatal(err)
	}
	if got := live.list(); len(got) != 1 || got[0].UploadID != c {
		t.Errorf("after complete and abort: %+v, want only c", got)
	}
}

func TestCleanupCommand(t *testing.T) {
	// Without an endpoint the command must fail with one line, before any
	// prompt; the listing and abort logic are covered above and against
	// MinIO in the integration tests.
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var out, errOut bytes.Buffer
	if code := runCleanup([]string{"--older-than", "off", "b"}, stdin, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "older-than off") {
		t.Errorf("--older-than off: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := runCleanup([]string{"a", "b"}, stdin, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "want BUCKET[:PREFIX]") {
		t.Errorf("two operands: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := runCleanup([]string{"--help"}, stdin, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "--yes") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
	if isTerminal(stdin) {
		t.Error("/dev/null counted as a terminal")
	}
	c, err := parseCleanupArgs([]string{"--yes", "bucket:logs/2026", "--older-than", "0", "--endpoint", "http://x"})
	if err != nil || !c.Yes || c.OlderThan != 0 || c.Bucket != "bucket" || c.Prefix != "logs/2026/" || !c.PathStyle {
		t.Errorf("parseCleanupArgs = %+v, %v", c, err)
	}
	if c, _ := parseCleanupArgs([]string{"b"}); c.OlderThan != defaultCleanupAge {
		t.Errorf("default age %v", c.OlderThan)
	}
}
