// Package metrics counts what a partfs mount does, for Prometheus and for
// `partfs status`. It is the only package of partfs that imports the
// Prometheus client.
//
// # What is counted
//
// Wrap puts a thin store.Store in front of the S3 store. Every call is one
// request: it is counted by operation and outcome, timed in a histogram by
// operation, and, at Debug level, logged with its key, part number and size.
// Wrap it inside the retry wrapper (store.WithRetry(m.Wrap(s3), …)) so that
// each attempt is one request, and hand Retried to RetryOptions.OnRetry so
// that retries are counted too. Only keys, part numbers, sizes, outcomes and
// durations are recorded: the wrapper never sees credentials or SSE-C keys,
// which live inside the S3 store's client.
//
// The write buffer, the read cache and the count of files with unsaved
// changes belong to other packages; Options names functions that read them,
// and the gauges call those functions at every scrape.
//
// # Names
//
// All series start with partfs_. Byte counts are in bytes and durations in
// seconds, as Prometheus's conventions ask.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/partfs/partfs/store"
)

// WriteBuffer is a snapshot of the memory budget of data written but not yet
// uploaded.
type WriteBuffer struct {
	Total   int64 `json:"total_bytes"`
	Used    int64 `json:"used_bytes"`
	Peak    int64 `json:"peak_bytes"`
	Waiting int   `json:"waiting_writers"` // writers waiting for memory
	Uploads int   `json:"uploads"`         // part uploads that will free memory when done
}

// Cache is a snapshot of the read cache's counters.
type Cache struct {
	Hits     int64 `json:"hits"`      // blocks
	Misses   int64 `json:"misses"`    // blocks
	Gets     int64 `json:"gets"`      // GET requests sent
	GetBytes int64 `json:"get_bytes"` // bytes those requests asked for
}

// Options names the figures that other packages keep. A nil function leaves
// its series out.
type Options struct {
	// WriteBuffer reads the write budget (writeback.Writer.Stats).
	WriteBuffer func() WriteBuffer
	// Cache reads the block cache's counters (cache.Cache.Stats).
	Cache func() Cache
	// DirtyFiles counts the files with changes not yet durable in S3.
	DirtyFiles func() int
	// UploadFailures counts the uploads after close (--fast-close) that
	// failed (fs.Root.UploadFailures).
	UploadFailures func() int64
	// Conflicts counts the writes that lost a race with another client
	// (writeback.Writer.Conflicts).
	Conflicts func() int64
	// Logger gets one Debug record per S3 request; nil discards.
	Logger *slog.Logger
}

// Metrics holds a mount's counters and its Prometheus registry. It is safe
// for concurrent use.
type Metrics struct {
	opts     Options
	log      *slog.Logger
	registry *prometheus.Registry

	requests *prometheus.CounterVec   // operation, status
	inflight *prometheus.GaugeVec     // operation
	duration *prometheus.HistogramVec // operation
	retries  *prometheus.CounterVec   // operation
	up       prometheus.Counter
	down     prometheus.Counter
	copied   prometheus.Counter

	// The same figures as plain numbers, for Snapshot.
	nRequests, nErrors, nRetries atomic.Int64
	nUp, nDown, nCopied          atomic.Int64
	nPartsInFlight               atomic.Int64
}

// New returns a Metrics with its series registered, together with Go's
// runtime and process collectors.
func New(opts Options) *Metrics {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{opts: opts, log: log, registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partfs_s3_requests_total",
		Help: "S3 requests sent, by operation and outcome (ok, not_found, precondition_failed, no_such_upload, bad_digest, access_denied, rejected, transient, canceled, error). Each retry is a request.",
	}, []string{"operation", "status"})
	m.inflight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "partfs_s3_requests_in_flight",
		Help: "S3 requests sent and not yet answered, by operation; operation=\"UploadPart\" is the parts being uploaded.",
	}, []string{"operation"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "partfs_s3_request_duration_seconds",
		Help: "Time from sending an S3 request to its answer, by operation; operation=\"UploadPart\" and \"PutObject\" are the upload latency. For GetObject, the time to the first byte.",
		// 5 ms to about 3 minutes.
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"operation"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "partfs_s3_retries_total",
		Help: "S3 requests sent again after a transient failure, by operation.",
	}, []string{"operation"})
	m.up = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "partfs_s3_uploaded_bytes_total",
		Help: "Bytes of PutObject and UploadPart bodies that S3 accepted.",
	})
	m.down = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "partfs_s3_downloaded_bytes_total",
		Help: "Bytes read from GetObject bodies.",
	})
	m.copied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "partfs_s3_copied_bytes_total",
		Help: "Bytes copied server-side by UploadPartCopy (not sent over the network).",
	})
	m.registry.MustRegister(m.requests, m.inflight, m.duration, m.retries, m.up, m.down, m.copied,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerSources()
	return m
}

// registerSources adds the gauges read from other packages at each scrape.
func (m *Metrics) registerSources() {
	gauge := func(name, help string, f func() float64) {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		m.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	if wb := m.opts.WriteBuffer; wb != nil {
		gauge("partfs_write_buffer_bytes", "Memory holding data written but not yet uploaded.",
			func() float64 { return float64(wb().Used) })
		gauge("partfs_write_buffer_limit_bytes", "The write buffer's budget (--write-buffer).",
			func() float64 { return float64(wb().Total) })
		gauge("partfs_write_buffer_peak_bytes", "The most the write buffer has held.",
			func() float64 { return float64(wb().Peak) })
		gauge("partfs_write_waiting_writers", "Writers waiting for write-buffer memory (backpressure).",
			func() float64 { return float64(wb().Waiting) })
		gauge("partfs_write_parts_in_flight", "Parts being uploaded whose memory returns to the write buffer when they are done.",
			func() float64 { return float64(wb().Uploads) })
	}
	if c := m.opts.Cache; c != nil {
		counter("partfs_cache_hits_total", "Blocks read from the cache or from read-ahead.",
			func() float64 { return float64(c().Hits) })
		counter("partfs_cache_misses_total", "Blocks a read had to fetch or wait for.",
			func() float64 { return float64(c().Misses) })
		counter("partfs_cache_fetched_bytes_total", "Bytes the cache asked S3 for.",
			func() float64 { return float64(c().GetBytes) })
	}
	if d := m.opts.DirtyFiles; d != nil {
		gauge("partfs_dirty_files", "Files with changes not yet durable in S3.",
			func() float64 { return float64(d()) })
	}
	if c := m.opts.Conflicts; c != nil {
		counter("partfs_conflicts_total", "Writes that lost a race with another client (their close or fsync got ESTALE; --on-conflict copy keeps their bytes under a conflict name).",
			func() float64 { return float64(c()) })
	}
	if u := m.opts.UploadFailures; u != nil {
		counter("partfs_upload_after_close_failures_total", "Uploads after close (--fast-close) that failed; the file's next close or fsync reports each.",
			func() float64 { return float64(u()) })
	}
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Retried counts one retry of op; it has the signature of
// store.RetryOptions.OnRetry.
func (m *Metrics) Retried(op string) {
	m.retries.WithLabelValues(operationName(op)).Inc()
	m.nRetries.Add(1)
}

// Snapshot is a mount's figures at one moment, for `partfs status`.
type Snapshot struct {
	Requests        int64 `json:"requests"`
	Errors          int64 `json:"errors"` // requests that failed; "not found" is an answer, not a failure
	Retries         int64 `json:"retries"`
	BytesUploaded   int64 `json:"bytes_uploaded"`
	BytesDownloaded int64 `json:"bytes_downloaded"`
	BytesCopied     int64 `json:"bytes_copied"`
	// PartsInFlight counts UploadPart requests sent and not yet answered.
	PartsInFlight int64        `json:"parts_in_flight"`
	DirtyFiles    int          `json:"dirty_files"`
	WriteBuffer   *WriteBuffer `json:"write_buffer,omitempty"`
	Cache         *Cache       `json:"cache,omitempty"`
}

// Snapshot returns the current figures.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{
		Requests:        m.nRequests.Load(),
		Errors:          m.nErrors.Load(),
		Retries:         m.nRetries.Load(),
		BytesUploaded:   m.nUp.Load(),
		BytesDownloaded: m.nDown.Load(),
		BytesCopied:     m.nCopied.Load(),
		PartsInFlight:   m.nPartsInFlight.Load(),
	}
	if m.opts.DirtyFiles != nil {
		s.DirtyFiles = m.opts.DirtyFiles()
	}
	if m.opts.WriteBuffer != nil {
		wb := m.opts.WriteBuffer()
		s.WriteBuffer = &wb
	}
	if m.opts.Cache != nil {
		c := m.opts.Cache()
		s.Cache = &c
	}
	return s
}

// statusOf names the outcome of a request for the status label.
func statusOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case errors.Is(err, store.ErrNotExist):
		return "not_found"
	case errors.Is(err, store.ErrPrecondition):
		return "precondition_failed"
	case errors.Is(err, store.ErrNoSuchUpload):
		return "no_such_upload"
	case errors.Is(err, store.ErrBadDigest):
		return "bad_digest"
	case errors.Is(err, store.ErrAccessDenied):
		return "access_denied"
	case errors.Is(err, store.ErrEntityTooSmall), errors.Is(err, store.ErrInvalidPart), errors.Is(err, store.ErrTooLarge):
		return "rejected"
	case errors.Is(err, store.ErrNotImplemented):
		return "not_implemented"
	case errors.Is(err, store.ErrTransient):
		return "transient"
	}
	return "error"
}
