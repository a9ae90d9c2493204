package integration

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// TestMetrics copies a file while scraping --metrics-addr and asking
// partfs status: the counters must be exposed and move while the copy runs.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	addr := "127.0.0.1:" + strconv.Itoa(closedPort(t))
	url := "http://" + addr + "/metrics"
	m := e.mount(mountConfig{extraArgs: []string{"--metrics-addr", addr}})
	const key = "copy.bin"
	// One retry: the first attempt of part 2 answers SlowDown.
	e.proxy.SetFault(faultOnce(s3proxy.OpUploadPart, key, func(part int) s3proxy.Fault {
		if part == 2 {
			return s3proxy.SlowDown()
		}
		return s3proxy.Fault{}
	}))
	defer e.proxy.SetFault(nil)

	w := startDD(t, m.path(key))
	waitParts := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool { return countDone(rs, key, s3proxy.OpUploadPart) >= n }); err != nil {
			t.Fatalf("waiting for %d parts: %v", n, err)
		}
	}
	src := testkit.RandomReader(50)
	if err := w.feed(src, 20*miB); err != nil {
		t.Fatal(err)
	}
	waitParts(2)
	// The proxy records an answer a moment before partfs has read it.
	first := scrapeUntil(t, url, `partfs_s3_requests_total{operation="UploadPart",status="ok"}`, 1)
	if err := w.feed(src, 24*miB); err != nil {
		t.Fatal(err)
	}
	waitParts(4)
	second := scrapeUntil(t, url, `partfs_s3_requests_total{operation="UploadPart",status="ok"}`,
		metricValue(first, `partfs_s3_requests_total{operation="UploadPart",status="ok"}`)+1)
	second = scrapeUntil(t, url, "partfs_s3_uploaded_bytes_total", float64(4*8*miB))

	// Exposed, with the names the README lists.
	for _, name := range []string{
		"partfs_s3_requests_total", "partfs_s3_requests_in_flight", "partfs_s3_request_duration_seconds_bucket",
		"partfs_s3_retries_total", "partfs_s3_uploaded_bytes_total", "partfs_s3_downloaded_bytes_total",
		"partfs_write_buffer_bytes", "partfs_write_buffer_limit_bytes", "partfs_write_waiting_writers",
		"partfs_write_parts_in_flight", "partfs_dirty_files",
		"partfs_cache_hits_total", "partfs_cache_misses_total", "partfs_cache_fetched_bytes_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(second, "\n"+name) {
			t.Errorf("metric %s missing", name)
		}
	}
	// Moving while the copy runs.
	moving := []string{
		`partfs_s3_requests_total{operation="UploadPart",status="ok"}`,
		`partfs_s3_uploaded_bytes_total`,
		`partfs_s3_request_duration_seconds_count{operation="UploadPart"}`,
	}
	for _, series := range moving {
		a, b := metricValue(first, series), metricValue(second, series)
		if !(a >= 1 && b > a) {
			t.Errorf("%s: %v then %v while the copy ran; want it to grow", series, a, b)
		}
	}
	if v := metricValue(second, `partfs_s3_retries_total{operation="UploadPart"}`); v != 1 {
		t.Errorf("UploadPart retries = %v, want 1", v)
	}
	if v := metricValue(second, `partfs_s3_requests_total{operation="UploadPart",status="transient"}`); v != 1 {
		t.Errorf("UploadPart transient failures = %v, want 1", v)
	}
	if v := metricValue(second, "partfs_dirty_files"); v != 1 {
		t.Errorf("dirty files during the copy = %v, want 1", v)
	}
	if v := metricValue(second, "partfs_write_buffer_limit_bytes"); v != float64(128*miB) {
		t.Errorf("write buffer limit = %v, want %d", v, 128*miB)
	}

	// partfs status reads the same figures from the running mount.
	out, err := e.runPartfs("status", "--json", m.dir)
	if err != nil {
		t.Fatalf("partfs status: %v\n%s", err, out)
	}
	var status struct {
		PID        int    `json:"pid"`
		MetricsURL string `json:"metrics_url"`
		Figures    struct {
			BytesUploaded int64 `json:"bytes_uploaded"`
			DirtyFiles    int   `json:"dirty_files"`
			WriteBuffer   struct {
				Total int64 `json:"total_bytes"`
			} `json:"write_buffer"`
		} `json:"figures"`
		LiveUploads []struct {
			Key string `json:"key"`
		} `json:"live_uploads"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatalf("partfs status --json: %v\n%s", err, out)
	}
	if status.PID != m.pid() || status.MetricsURL != url || status.Figures.DirtyFiles != 1 ||
		status.Figures.BytesUploaded < 4*8*miB || status.Figures.WriteBuffer.Total != 128*miB ||
		len(status.LiveUploads) != 1 || status.LiveUploads[0].Key != key {
		t.Errorf("partfs status --json:\n%s", out)
	}
	human, err := e.runPartfs("status", m.dir)
	if err != nil || !strings.Contains(human, "dirty files") || !strings.Contains(human, "parts in flight") {
		t.Errorf("partfs status: %v\n%s", err, human)
	}
	t.Logf("partfs status during the copy:\n%s", human)

	if err := w.finish(time.Minute); err != nil {
		t.Fatalf("dd: %v", err)
	}
	e.checkObject(key, w.sum(), 44*miB)

	// Reading moves the cache and download counters.
	f, err := os.Open(m.path(key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, f, 4*miB); err != nil {
		t.Fatal(err)
	}
	f.Close()
	third := scrape(t, url)
	for _, series := range []string{"partfs_cache_misses_total", "partfs_s3_downloaded_bytes_total"} {
		if v := metricValue(third, series); v <= 0 {
			t.Errorf("%s = %v after a read, want > 0", series, v)
		}
	}
	if v := metricValue(third, "partfs_dirty_files"); v != 0 {
		t.Errorf("dirty files after close = %v", v)
	}
	if v := metricValue(third, `partfs_s3_requests_in_flight{operation="UploadPart"}`); v != 0 {
		t.Errorf("UploadPart in flight after close = %v", v)
	}
}

// scrapeUntil scrapes until series reaches at least min, for up to 10s, and
// returns the last page.
func scrapeUntil(t *testing.T, url, series string, min float64) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		page := scrape(t, url)
		if metricValue(page, series) >= min || time.Now().After(deadline) {
			return page
		}
		time.Sleep(20 * time.Millisecond)
	}
}
