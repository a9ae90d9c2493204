package metrics

import (
	"context"
	"crypto/md5"
	"io"
	"log/slog"
	"time"

	"github.com/partfs/partfs/store"
)

// S3 operation names, the label values of the request series.
const (
	opHead           = "HeadObject"
	opGet            = "GetObject"
	opList           = "ListObjectsV2"
	opPut            = "PutObject"
	opCopy           = "CopyObject"
	opDelete         = "DeleteObject"
	opCreate         = "CreateMultipartUpload"
	opUploadPart     = "UploadPart"
	opUploadPartCopy = "UploadPartCopy"
	opComplete       = "CompleteMultipartUpload"
	opAbort          = "AbortMultipartUpload"
	opListUploads    = "ListMultipartUploads"
)

// operationName maps a store.Store method name, as store.WithRetry reports
// it, to the S3 operation it sends.
func operationName(method string) string {
	switch method {
	case "Stat":
		return opHead
	case "Get":
		return opGet
	case "List":
		return opList
	case "Put":
		return opPut
	case "Copy":
		return opCopy
	case "Delete", "DeleteIfMatch":
		return opDelete
	case "CreateMultipart":
		return opCreate
	case "UploadPart":
		return opUploadPart
	case "UploadPartCopy":
		return opUploadPartCopy
	case "CompleteMultipart":
		return opComplete
	case "AbortMultipart":
		return opAbort
	case "ListMultipart":
		return opListUploads
	}
	return method
}

// Wrap returns s with every call counted, timed and, at Debug level, logged.
func (m *Metrics) Wrap(s store.Store) store.Store { return &counting{s: s, m: m} }

type counting struct {
	s store.Store
	m *Metrics
}

var _ store.Store = (*counting)(nil)

// call describes one request while it runs.
type call struct {
	m     *Metrics
	op    string
	key   string
	part  int32
	size  int64
	start time.Time
}

// begin counts a request as in flight.
func (m *Metrics) begin(op, key string, part int32, size int64) call {
	m.inflight.WithLabelValues(op).Inc()
	if op == opUploadPart {
		m.nPartsInFlight.Add(1)
	}
	return call{m: m, op: op, key: key, part: part, size: size, start: time.Now()}
}

// end records the request's outcome.
func (c call) end(ctx context.Context, err error) {
	m := c.m
	elapsed := time.Since(c.start)
	status := statusOf(err)
	m.inflight.WithLabelValues(c.op).Dec()
	if c.op == opUploadPart {
		m.nPartsInFlight.Add(-1)
	}
	m.requests.WithLabelValues(c.op, status).Inc()
	m.duration.WithLabelValues(c.op).Observe(elapsed.Seconds())
	m.nRequests.Add(1)
	if err != nil && status != "not_found" {
		// A missing key is an answer (a negative lookup), not a failure.
		m.nErrors.Add(1)
	}
	if !m.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("op", c.op), slog.String("key", c.key)}
	if c.part != 0 {
		attrs = append(attrs, slog.Int("part", int(c.part)))
	}
	if c.size > 0 {
		attrs = append(attrs, slog.Int64("bytes", c.size))
	}
	attrs = append(attrs, slog.String("status", status), slog.Duration("elapsed", elapsed))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	m.log.LogAttrs(ctx, slog.LevelDebug, "s3 request", attrs...)
}

func (c *counting) Stat(ctx context.Context, key string) (store.Object, error) {
	r := c.m.begin(opHead, key, 0, 0)
	obj, err := c.s.Stat(ctx, key)
	r.end(ctx, err)
	return obj, err
}

func (c *counting) Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error) {
	r := c.m.begin(opGet, key, 0, length)
	rc, err := c.s.Get(ctx, key, off, length, etag)
	r.end(ctx, err)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, m: c.m}, nil
}

func (c *counting) List(ctx context.Context, prefix, delimiter, token string, max int) (store.ListPage, error) {
	r := c.m.begin(opList, prefix, 0, 0)
	page, err := c.s.List(ctx, prefix, delimiter, token, max)
	r.end(ctx, err)
	return page, err
}

func (c *counting) Put(ctx context.Context, key string, body []byte, sum [md5.Size]byte, opts store.PutOptions) (store.Object, error) {
	r := c.m.begin(opPut, key, 0, int64(len(body)))
	obj, err := c.s.Put(ctx, key, body, sum, opts)
	r.end(ctx, err)
	if err == nil {
		c.m.uploaded(int64(len(body)))
	}
	return obj, err
}

func (c *counting) Copy(ctx context.Context, src, dst, srcETag string, opts *store.PutOptions) (store.Object, error) {
	r := c.m.begin(opCopy, dst, 0, 0)
	obj, err := c.s.Copy(ctx, src, dst, srcETag, opts)
	r.end(ctx, err)
	if err == nil && obj.Size > 0 {
		// A pinned copy may not report its size (store.Store.Copy).
		c.m.copiedBytes(obj.Size)
	}
	return obj, err
}

func (c *counting) Delete(ctx context.Context, key string) error {
	r := c.m.begin(opDelete, key, 0, 0)
	err := c.s.Delete(ctx, key)
	r.end(ctx, err)
	return err
}

func (c *counting) DeleteIfMatch(ctx context.Context, key, etag string) error {
	r := c.m.begin(opDelete, key, 0, 0)
	err := c.s.DeleteIfMatch(ctx, key, etag)
	r.end(ctx, err)
	return err
}

func (c *counting) CreateMultipart(ctx context.Context, key string, opts store.PutOptions) (string, error) {
	r := c.m.begin(opCreate, key, 0, 0)
	id, err := c.s.CreateMultipart(ctx, key, opts)
	r.end(ctx, err)
	return id, err
}

func (c *counting) UploadPart(ctx context.Context, key, uploadID string, n int32, body []byte, sum [md5.Size]byte) (store.Part, error) {
	r := c.m.begin(opUploadPart, key, n, int64(len(body)))
	p, err := c.s.UploadPart(ctx, key, uploadID, n, body, sum)
	r.end(ctx, err)
	if err == nil {
		c.m.uploaded(int64(len(body)))
	}
	return p, err
}

func (c *counting) UploadPartCopy(ctx context.Context, key, uploadID string, n int32, src, srcETag string, off, length int64) (store.Part, error) {
	r := c.m.begin(opUploadPartCopy, key, n, length)
	p, err := c.s.UploadPartCopy(ctx, key, uploadID, n, src, srcETag, off, length)
	r.end(ctx, err)
	if err == nil {
		c.m.copiedBytes(length)
	}
	return p, err
}

func (c *counting) CompleteMultipart(ctx context.Context, key, uploadID string, parts []store.Part, cond store.Condition) (store.Object, error) {
	r := c.m.begin(opComplete, key, 0, 0)
	obj, err := c.s.CompleteMultipart(ctx, key, uploadID, parts, cond)
	r.end(ctx, err)
	return obj, err
}

func (c *counting) AbortMultipart(ctx context.Context, key, uploadID string) error {
	r := c.m.begin(opAbort, key, 0, 0)
	err := c.s.AbortMultipart(ctx, key, uploadID)
	r.end(ctx, err)
	return err
}

func (c *counting) ListMultipart(ctx context.Context, prefix string) ([]store.Upload, error) {
	r := c.m.begin(opListUploads, prefix, 0, 0)
	ups, err := c.s.ListMultipart(ctx, prefix)
	r.end(ctx, err)
	return ups, err
}

func (m *Metrics) uploaded(n int64) {
	m.up.Add(float64(n))
	m.nUp.Add(n)
}

func (m *Metrics) copiedBytes(n int64) {
	m.copied.Add(float64(n))
	m.nCopied.Add(n)
}

// countingReader counts the bytes of a GET body as they are read.
type countingReader struct {
	io.ReadCloser
	m *Metrics
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.m.down.Add(float64(n))
		r.m.nDown.Add(int64(n))
	}
	return n, err
}
