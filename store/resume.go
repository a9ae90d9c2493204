package store

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Versioned is implemented by Get bodies that know the ETag of the version
// they are reading. A resumed read pins the rest of the body to it when the
// caller gave no ETag of its own.
type Versioned interface {
	ETag() string
}

// resumingBody is the body WithRetry's Get returns: it reads the store's
// body and, when that fails with a transient error, requests the rest again
// from the first byte not yet delivered, pinned to the version read so far.
// It is used by one reader at a time, as any io.Reader.
type resumingBody struct {
	r    *retrying
	ctx  context.Context
	key  string
	etag string // the pinned version; "" until known
	off  int64  // the next byte to deliver
	left int64  // bytes still wanted; < 0: to the end of the object

	rc     io.ReadCloser // the current body; nil between a failure and the next open
	tries  *attempts
	closed bool
}

// open requests the rest of the body, retrying within the budget.
func (b *resumingBody) open() error {
	for {
		rc, err := b.r.s.Get(b.ctx, b.key, b.off, b.left, b.etag)
		if err == nil {
			if v, ok := rc.(Versioned); ok && b.etag == "" {
				b.etag = v.ETag()
			}
			b.rc = rc
			return nil
		}
		if err := b.tries.failed(b.ctx, err); err != nil {
			return err
		}
	}
}

func (b *resumingBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("store: read of a closed body")
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	for {
		if b.rc == nil {
			if err := b.open(); err != nil {
				return 0, fmt.Errorf("resume reading %q at %d: %w", b.key, b.off, err)
			}
		}
		n, err := b.rc.Read(p)
		b.off += int64(n)
		if b.left > 0 {
			b.left -= int64(n)
		}
		if n > 0 {
			b.tries.progressed()
		}
		if err == nil || err == io.EOF || !IsTransient(err) || b.etag == "" {
			// A version unknown cannot be resumed without risking a mix
			// of two versions, so that failure is the reader's.
			return n, err
		}
		b.rc.Close()
		b.rc = nil
		if n > 0 {
			return n, nil // deliver these first; the next Read resumes
		}
		if err := b.tries.failed(b.ctx, err); err != nil {
			return 0, err
		}
	}
}

func (b *resumingBody) Close() error {
	b.closed = true
	if b.rc == nil {
		return nil
	}
	err := b.rc.Close()
	b.rc = nil
	return err
}

// ReadSpans fills bufs, which lie end to end in key from off on, through
// one Get pinned to etag (when it is not empty), calling filled(i) as soon
// as bufs[i] is full, so that a caller streaming many blocks can hand each
// on while the rest still arrives. It is the one place where GET bodies are
// read into buffers. It returns the bytes read; a body ending early gives
// io.ErrUnexpectedEOF (the object is shorter than asked), any other
// failure its error. Through WithRetry the body resumes after transient
// failures, so a cut costs a re-request of the missing bytes only.
//
// Buffers that also lie end to end in memory (each the continuation of the
// one before within its capacity) are read as one, in reads as large as
// the body gives: an HTTP client copies a body through its own buffer for
// every read smaller than that buffer, as the last part of each block's
// read would be.
func ReadSpans(ctx context.Context, st Store, key, etag string, off int64, bufs [][]byte, filled func(i int)) (int64, error) {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	if total == 0 {
		return 0, nil
	}
	rc, err := st.Get(ctx, key, off, total, etag)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if filled == nil {
		filled = func(int) {}
	}
	var n int64
	for i := 0; i < len(bufs); {
		span, j := bufs[i], i+1
		for j < len(bufs) && continues(span, bufs[j]) {
			span = span[:len(span)+len(bufs[j])]
			j++
		}
		got, err := readSpan(rc, span, bufs[i:j], func(k int) { filled(i + k) })
		n += int64(got)
		if err != nil {
			return n, err
		}
		i = j
	}
	return n, nil
}

// continues reports whether b starts where a ends, within a's capacity,
// or is empty.
func continues(a, b []byte) bool {
	return len(b) == 0 || cap(a)-len(a) >= len(b) && &a[:len(a)+1][len(a)] == &b[0]
}

// readSpan fills span, which is parts end to end, from r, calling
// filled(k) as soon as parts[k] is full.
func readSpan(r io.Reader, span []byte, parts [][]byte, filled func(k int)) (int, error) {
	done, next, end := 0, 0, 0
	for {
		for next < len(parts) && done >= end+len(parts[next]) {
			end += len(parts[next])
			filled(next)
			next++
		}
		if done == len(span) {
			return done, nil
		}
		got, err := r.Read(span[done:])
		done += got
		if err != nil && done < len(span) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
}

// ReadAt fills p with the bytes of key from off on: ReadSpans of one buffer.
func ReadAt(ctx context.Context, st Store, key, etag string, p []byte, off int64) (int, error) {
	n, err := ReadSpans(ctx, st, key, etag, off, [][]byte{p}, nil)
	return int(n), err
}
