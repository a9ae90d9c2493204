package store

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
)

// RetryOptions configures WithRetry. Zero values get defaults.
type RetryOptions struct {
	// Budget bounds the retries of one call: a call that keeps failing with
	// transient errors is retried until Budget has passed since its first
	// attempt, then fails. For a GET body the clock restarts whenever bytes
	// arrive, so a long read on a flaky network is bounded by the time it
	// goes without progress, not by its length. Default 2m.
	Budget time.Duration
	// Attempts caps the tries per call, the first included, within Budget;
	// 0 means no cap.
	Attempts int
	// Base is the delay before the first retry; it doubles with each retry
	// up to Max, and each delay is jittered. Defaults 200ms and 10s.
	Base time.Duration
	Max  time.Duration
	// Logger gets one Warn record per retry; nil discards.
	Logger *slog.Logger
	// OnRetry, when set, is called with the method name before each retry,
	// so that retries can be counted.
	OnRetry func(op string)
}

// WithRetry returns a Store that retries calls of s failing with an error for
// which IsTransient holds, with exponential backoff and jitter, re-sending
// exactly the same body, within RetryOptions.Budget. It stops at once when
// ctx is done and then returns the last error wrapped together with the
// context's. The error of a call that ran out of budget names the
// operation, the key, the attempts made and the last failure.
//
// Get bodies resume: a body that fails with a transient error while being
// read (a reset, a cut, a stall the transport detected) is requested again
// from the first byte not yet delivered, pinned to the same version (the
// caller's ETag, or the one the first answer carried), so the reader sees
// one unbroken stream or an error, never bytes of two versions.
//
// Retries can meet the effects of an attempt whose reply was lost: a
// CompleteMultipart or AbortMultipart retried after a transient failure may
// find the upload gone (ErrNoSuchUpload). An abort then counts as done, and a
// complete counts as done when the object now carries the ETag those parts
// produce. A CreateMultipart retried that way leaves an unused upload behind,
// which ListMultipart shows and an abort removes.
//
// A conditional Put or CompleteMultipart retried that way finds its own
// object there and fails its condition (ErrPrecondition). The call then
// counts as done when the object carries the ETag its bytes produce (the
// body's MD5 for a Put, the parts' multipart ETag for a complete); another
// writer that stored the very same bytes meanwhile is taken for the
// earlier attempt, which loses nothing. A 409 ConditionalRequestConflict is
// transient and retried like any other; a conflicting complete may find
// its upload discarded (ErrNoSuchUpload) and must then be started again.
func WithRetry(s Store, opts RetryOptions) Store {
	if opts.Budget <= 0 {
		opts.Budget = 2 * time.Minute
	}
	if opts.Base <= 0 {
		opts.Base = 200 * time.Millisecond
	}
	if opts.Max <= 0 {
		opts.Max = 10 * time.Second
	}
	if opts.Max < opts.Base {
		opts.Max = opts.Base
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &retrying{s: s, opts: opts}
}

type retrying struct {
	s    Store
	opts RetryOptions
}

var _ Store = (*retrying)(nil)

// badDigestAttempts is how often a body the server found corrupted
// (ErrBadDigest) is sent.
const badDigestAttempts = 5

// attempts tracks the tries of one call (or of one stretch of a GET body
// without progress) against the budget.
type attempts struct {
	r     *retrying
	op    string
	key   string
	part  int32
	start time.Time
	n     int // failed attempts so far
}

func (r *retrying) attempts(op, key string, part int32) *attempts {
	return &attempts{r: r, op: op, key: key, part: part, start: time.Now()}
}

// failed records a failed attempt. It returns nil after waiting out the
// backoff when another attempt should be made, and otherwise the error the
// call ends with.
func (a *attempts) failed(ctx context.Context, err error) error {
	a.n++
	if !IsTransient(err) {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s %q: %w (not retried: %w)", a.op, a.key, err, context.Cause(ctx))
	}
	elapsed := time.Since(a.start)
	left := a.r.opts.Budget - elapsed
	// A BadDigest that persists is not the network: the same bytes will
	// keep failing, so it gets a few attempts, not the whole budget.
	badDigest := errors.Is(err, ErrBadDigest) && a.n >= badDigestAttempts
	if left <= 0 || badDigest || (a.r.opts.Attempts > 0 && a.n >= a.r.opts.Attempts) {
		return fmt.Errorf("%s %q: giving up after %d attempts in %v: %w",
			a.op, a.key, a.n, elapsed.Round(time.Millisecond), err)
	}
	delay := min(a.r.delay(a.n), left)
	a.r.opts.Logger.Warn("store: retrying", "op", a.op, "key", a.key, "part", a.part,
		"attempt", a.n+1, "delay", delay, "err", err)
	if a.r.opts.OnRetry != nil {
		a.r.opts.OnRetry(a.op)
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s %q: %w (not retried: %w)", a.op, a.key, err, context.Cause(ctx))
	case <-timer.C:
		return nil
	}
}

// progressed restarts the budget: the stretch without progress begins anew.
func (a *attempts) progressed() {
	a.start, a.n = time.Now(), 0
}

// do runs f until it succeeds, fails for good, runs out of budget or ctx
// is done. f gets the attempt number, starting at 1.
func (r *retrying) do(ctx context.Context, op, key string, part int32, f func(attempt int) error) error {
	a := r.attempts(op, key, part)
	for {
		err := f(a.n + 1)
		if err == nil {
			return nil
		}
		if err := a.failed(ctx, err); err != nil {
			return err
		}
	}
}

// delay returns the wait after the given failed attempt: Base doubled per
// earlier retry, capped at Max, then drawn from its upper half so that
// clients failing together do not retry together.
func (r *retrying) delay(attempt int) time.Duration {
	d := r.opts.Base
	for i := 1; i < attempt && d < r.opts.Max; i++ {
		d *= 2
	}
	d = min(d, r.opts.Max)
	return d/2 + rand.N(d/2+1)
}

func (r *retrying) Stat(ctx context.Context, key string) (obj Object, err error) {
	err = r.do(ctx, "Stat", key, 0, func(int) error {
		obj, err = r.s.Stat(ctx, key)
		return err
	})
	return obj, err
}

func (r *retrying) Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error) {
	b := &resumingBody{r: r, ctx: ctx, key: key, off: off, left: length, etag: etag,
		tries: r.attempts("Get", key, 0)}
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *retrying) List(ctx context.Context, prefix, delimiter, token string, max int) (page ListPage, err error) {
	err = r.do(ctx, "List", prefix, 0, func(int) error {
		page, err = r.s.List(ctx, prefix, delimiter, token, max)
		return err
	})
	return page, err
}

func (r *retrying) Put(ctx context.Context, key string, body []byte, sum [md5.Size]byte, opts PutOptions) (obj Object, err error) {
	err = r.do(ctx, "Put", key, 0, func(attempt int) error {
		obj, err = r.s.Put(ctx, key, body, sum, opts)
		if attempt > 1 && !opts.Cond.IsZero() && errors.Is(err, ErrPrecondition) {
			// An earlier attempt may have stored the object.
			if done, ok := r.landed(ctx, key, hex.EncodeToString(sum[:])); ok {
				obj, err = done, nil
			}
		}
		return err
	})
	return obj, err
}

// landed reports whether key now holds the object with ETag want, the one
// an earlier attempt whose answer was lost would have stored.
func (r *retrying) landed(ctx context.Context, key, want string) (Object, bool) {
	if want == "" {
		return Object{}, false
	}
	obj, err := r.s.Stat(ctx, key)
	return obj, err == nil && obj.ETag == want
}

func (r *retrying) Copy(ctx context.Context, src, dst, srcETag string, opts *PutOptions) (obj Object, err error) {
	err = r.do(ctx, "Copy", dst, 0, func(int) error {
		obj, err = r.s.Copy(ctx, src, dst, srcETag, opts)
		return err
	})
	return obj, err
}

func (r *retrying) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "Delete", key, 0, func(int) error {
		return r.s.Delete(ctx, key)
	})
}

func (r *retrying) DeleteIfMatch(ctx context.Context, key, etag string) error {
	return r.do(ctx, "DeleteIfMatch", key, 0, func(int) error {
		return r.s.DeleteIfMatch(ctx, key, etag)
	})
}

func (r *retrying) CreateMultipart(ctx context.Context, key string, opts PutOptions) (id string, err error) {
	err = r.do(ctx, "CreateMultipart", key, 0, func(int) error {
		id, err = r.s.CreateMultipart(ctx, key, opts)
		return err
	})
	return id, err
}

func (r *retrying) UploadPart(ctx context.Context, key, uploadID string, n int32, body []byte, sum [md5.Size]byte) (p Part, err error) {
	err = r.do(ctx, "UploadPart", key, n, func(int) error {
		p, err = r.s.UploadPart(ctx, key, uploadID, n, body, sum)
		return err
	})
	return p, err
}

func (r *retrying) UploadPartCopy(ctx context.Context, key, uploadID string, n int32, src, srcETag string, off, length int64) (p Part, err error) {
	err = r.do(ctx, "UploadPartCopy", key, n, func(int) error {
		p, err = r.s.UploadPartCopy(ctx, key, uploadID, n, src, srcETag, off, length)
		return err
	})
	return p, err
}

func (r *retrying) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part, cond Condition) (obj Object, err error) {
	err = r.do(ctx, "CompleteMultipart", key, 0, func(attempt int) error {
		obj, err = r.s.CompleteMultipart(ctx, key, uploadID, parts, cond)
		ownObject := !cond.IsZero() && errors.Is(err, ErrPrecondition)
		if attempt > 1 && (errors.Is(err, ErrNoSuchUpload) || ownObject) {
			// An earlier attempt may have completed the upload.
			if done, ok := r.landed(ctx, key, multipartETag(parts)); ok {
				obj, err = done, nil
			}
		}
		return err
	})
	return obj, err
}

func (r *retrying) AbortMultipart(ctx context.Context, key, uploadID string) error {
	return r.do(ctx, "AbortMultipart", key, 0, func(attempt int) error {
		err := r.s.AbortMultipart(ctx, key, uploadID)
		if attempt > 1 && errors.Is(err, ErrNoSuchUpload) {
			return nil // an earlier attempt aborted it
		}
		return err
	})
}

func (r *retrying) ListMultipart(ctx context.Context, prefix string) (ups []Upload, err error) {
	err = r.do(ctx, "ListMultipart", prefix, 0, func(int) error {
		ups, err = r.s.ListMultipart(ctx, prefix)
		return err
	})
	return ups, err
}

// multipartETag returns the ETag S3 gives the object completed from parts:
// the hex MD5 of the concatenated binary part MD5s, then "-N". It returns ""
// when a part ETag is not a plain MD5 (as with some server-side encryption).
func multipartETag(parts []Part) string {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			return ""
		}
		h.Write(b)
	}
	return fmt.Sprintf("%s-%d", hex.EncodeToString(h.Sum(nil)), len(parts))
}
