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

// ReadAt fills p with the bytes of key from off on, pinned to etag when it
// is not empty, through one Get; it is the one place where a GET body is read
// into a buffer. It returns the bytes read; fewer than len(p) come with
// io.ErrUnexpectedEOF (the object is shorter) or the error that ended the
// read. Through WithRetry the body resumes after transient failures.
func ReadAt(ctx context.Context, st Store, key, etag string, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	rc, err := st.Get(ctx, key, off, int64(len(p)), etag)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
