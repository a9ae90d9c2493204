package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

// scrape returns the metrics text.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// value returns the value of the series line starting with series, or -1.
func value(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

func TestCountsMove(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	var logs bytes.Buffer
	m := New(Options{
		WriteBuffer: func() WriteBuffer { return WriteBuffer{Total: 100, Used: 40, Peak: 60, Waiting: 2, Uploads: 3} },
		Cache:       func() Cache { return Cache{Hits: 7, Misses: 5, Gets: 4, GetBytes: 1234} },
		DirtyFiles:  func() int { return 1 },
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	st := store.WithRetry(m.Wrap(mem), store.RetryOptions{Base: time.Millisecond, OnRetry: m.Retried})

	small := []byte("hello, partfs")
	if _, err := st.Put(ctx, "a.txt", small, store.Sum(small), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte{1}, int(store.MinPartSize))
	id, err := st.CreateMultipart(ctx, "big.bin", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The first attempt of part 2 fails and is retried.
	var once sync.Once
	mem.SetFault(func(op memstore.Op) error {
		var err error
		if op.Name == "UploadPart" && op.Part == 2 {
			once.Do(func() { err = fmt.Errorf("injected: %w", store.ErrTransient) })
		}
		return err
	})
	var parts []store.Part
	for n := int32(1); n <= 2; n++ {
		p, err := st.UploadPart(ctx, "big.bin", id, n, part, store.Sum(part))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	if _, err := st.CompleteMultipart(ctx, "big.bin", id, parts, store.Condition{}); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, "a.txt", 0, -1, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := st.Stat(ctx, "missing"); err == nil {
		t.Fatal("stat of a missing key succeeded")
	}
	if err := st.DeleteIfMatch(ctx, "a.txt", "0123456789abcdef0123456789abcdef"); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("DeleteIfMatch with a wrong ETag: %v", err)
	}

	text := scrape(t, m)
	want := map[string]float64{
		`partfs_s3_requests_total{operation="PutObject",status="ok"}`:                     1,
		`partfs_s3_requests_total{operation="UploadPart",status="ok"}`:                    2,
		`partfs_s3_requests_total{operation="UploadPart",status="transient"}`:             1,
		`partfs_s3_requests_total{operation="CompleteMultipartUpload",status="ok"}`:       1,
		`partfs_s3_requests_total{operation="HeadObject",status="not_found"}`:             1,
		`partfs_s3_requests_total{operation="DeleteObject",status="precondition_failed"}`: 1,
		`partfs_s3_retries_total{operation="UploadPart"}`:                                 1,
		`partfs_s3_uploaded_bytes_total`:                                                  float64(len(small)) + 2*float64(len(part)),
		`partfs_s3_downloaded_bytes_total`:                                                float64(len(small)),
		`partfs_s3_requests_in_flight{operation="UploadPart"}`:                            0,
		`partfs_s3_request_duration_seconds_count{operation="UploadPart"}`:                3,
		`partfs_write_buffer_bytes`:                                                       40,
		`partfs_write_buffer_limit_bytes`:                                                 100,
		`partfs_write_waiting_writers`:                                                    2,
		`partfs_write_parts_in_flight`:                                                    3,
		`partfs_cache_hits_total`:                                                         7,
		`partfs_cache_misses_total`:                                                       5,
		`partfs_cache_fetched_bytes_total`:                                                1234,
		`partfs_dirty_files`:                                                              1,
	}
	for series, v := range want {
		if got := value(text, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	if !strings.Contains(text, "go_goroutines") || !strings.Contains(text, "process_resident_memory_bytes") {
		t.Error("the Go and process collectors are missing")
	}

	s := m.Snapshot()
	if s.BytesUploaded != int64(len(small))+2*int64(len(part)) || s.Retries != 1 || s.Errors != 2 ||
		s.Requests != 9 || s.DirtyFiles != 1 || s.WriteBuffer == nil || s.WriteBuffer.Used != 40 || s.Cache == nil {
		t.Errorf("snapshot = %+v", s)
	}

	for _, want := range []string{"op=UploadPart key=big.bin part=2", "op=PutObject key=a.txt bytes=13 status=ok"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("debug log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestPartsInFlight(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	m := New(Options{})
	st := m.Wrap(mem)
	id, err := st.CreateMultipart(ctx, "k", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "UploadPart" {
			close(entered)
			<-release
		}
		return nil
	})
	done := make(chan error)
	go func() {
		b := []byte("last part may be small")
		_, err := st.UploadPart(ctx, "k", id, 1, b, store.Sum(b))
		done <- err
	}()
	<-entered
	if got := m.Snapshot().PartsInFlight; got != 1 {
		t.Errorf("parts in flight during an upload = %d, want 1", got)
	}
	if got := value(scrape(t, m), `partfs_s3_requests_in_flight{operation="UploadPart"}`); got != 1 {
		t.Errorf("in-flight gauge = %v, want 1", got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := m.Snapshot().PartsInFlight; got != 0 {
		t.Errorf("parts in flight afterwards = %d, want 0", got)
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("x: %w", store.ErrNotExist), "not_found"},
		{fmt.Errorf("x: %w", store.ErrPrecondition), "precondition_failed"},
		{fmt.Errorf("x: %w", store.ErrTransient), "transient"},
		{fmt.Errorf("x: %w", store.ErrNotImplemented), "not_implemented"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{fmt.Errorf("x: %w", store.ErrInvalidPart), "rejected"},
		{io.ErrUnexpectedEOF, "error"},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
