package writeback

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/partfs/partfs/store"
)

// abortTimeout bounds the AbortMultipart sent after a failure; the request
// that failed may have been cancelled, the abort must still go out. When the
// upload failed with a transient error (S3 did not answer within the retry
// budget), the abort gets unreachableAbortTimeout only, so that close
// reports the failure without waiting out a second budget; an abort that
// fails is tried again at unmount (Writer.RetryAborts).
const (
	abortTimeout            = 30 * time.Second
	unreachableAbortTimeout = 3 * time.Second
)

// upload is one multipart upload in progress. Parts are sent by goroutines
// under a context detached from the FUSE request that sealed them, so an
// interrupted write does not cancel bytes already accepted.
type upload struct {
	w      *Writer
	key    string
	id     string
	cond   store.Condition // the PutOptions.Cond the upload was created with
	md     store.Metadata  // the metadata it was created with: the object's
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// numbers is every part number sent so far. Only the goroutine holding
	// the File's opMu sends, so it needs no lock of its own.
	numbers map[int]bool

	mu    sync.Mutex
	parts map[int32]store.Part // guarded by mu
	err   error                // first failure; guarded by mu
}

// The condition in opts goes on CompleteMultipartUpload, and on
// CreateMultipartUpload too, where a server such as MinIO checks it early; a
// server that refuses it there (NotImplemented: AWS documents no conditions
// for that request) gets it at completion only, from then on.
func (w *Writer) startUpload(ctx context.Context, key string, opts store.PutOptions) (*upload, error) {
	create := opts
	if w.noCreateCond.Load() {
		create.Cond = store.Condition{}
	}
	up, err := w.startUploadUnder(ctx, context.WithoutCancel(ctx), key, create)
	if err != nil && errors.Is(err, store.ErrNotImplemented) && !create.Cond.IsZero() {
		if !w.noCreateCond.Swap(true) {
			w.log.Info("the server refuses conditions on CreateMultipartUpload; they are checked at completion only", "err", err)
		}
		create.Cond = store.Condition{}
		up, err = w.startUploadUnder(ctx, context.WithoutCancel(ctx), key, create)
	}
	if up != nil {
		up.cond = opts.Cond
	}
	return up, err
}

// startUploadUnder starts an upload whose parts run under parent: the
// temporary upload of a staged part runs under the file's upload, so that
// failing or aborting the file stops its pieces too.
func (w *Writer) startUploadUnder(ctx, parent context.Context, key string, opts store.PutOptions) (*upload, error) {
	uctx, cancel := context.WithCancel(parent)
	id, err := w.st.CreateMultipart(ctx, key, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start multipart upload of %q: %w", key, err)
	}
	w.log.Debug("multipart upload started", "key", key)
	return &upload{w: w, key: key, id: id, cond: opts.Cond, md: opts.Metadata, ctx: uctx, cancel: cancel,
		numbers: map[int]bool{}, parts: map[int32]store.Part{}}, nil
}

// sendPart uploads body as part n in the background and then recycles body.
func (u *upload) sendPart(n int, body []byte) {
	u.run(n, func() error {
		sum := md5.Sum(body)
		part, err := u.w.st.UploadPart(u.ctx, u.key, u.id, int32(n), body, sum)
		if err != nil {
			return fmt.Errorf("upload part %d of %q: %w", n, u.key, err)
		}
		part.Size = int64(len(body))
		u.add(part)
		return nil
	}, func() { u.w.recycle(body) })
}

// copyPart makes part n from a range of the stored object src, server-side.
func (u *upload) copyPart(n int, src store.Object, off, length int64) {
	u.run(n, func() error {
		part, err := u.w.st.UploadPartCopy(u.ctx, u.key, u.id, int32(n), src.Key, src.ETag, off, length)
		if err != nil {
			return fmt.Errorf("copy part %d of %q from bytes %d-%d of the stored object: %w", n, u.key, off, off+length-1, err)
		}
		part.Size = length
		u.add(part)
		return nil
	}, func() {})
}

// copyStaged brings a staged part in as part n, in the background: once the
// pieces sent to tmp are stored, tmp is completed, the first length bytes
// of its object are copied as part n, pinned to the object's ETag, and the
// object is deleted. Waiting for the pieces takes no upload slot, as the
// pieces need the slots; the three requests after it take one.
func (u *upload) copyStaged(n int, tmp *upload, pieces int, length int64) {
	if u.numbers[n] {
		u.wg.Wait()
	}
	u.numbers[n] = true
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		if err := u.bringIn(n, tmp, pieces, length); err != nil {
			u.fail(err)
		}
	}()
}

func (u *upload) bringIn(n int, tmp *upload, pieces int, length int64) error {
	if err := tmp.wait(u.ctx); err != nil {
		tmp.abort()
		return err
	}
	if err := u.w.slots.Acquire(u.ctx, 1); err != nil {
		tmp.abort()
		return err
	}
	defer u.w.slots.Release(1)
	obj, err := tmp.complete(u.ctx, pieces)
	if err != nil {
		tmp.abort()
		u.removeStaged(tmp.key) // the reply may have been lost after the object was made
		return fmt.Errorf("staged part %d of %q: %w", n, u.key, err)
	}
	part, err := u.w.st.UploadPartCopy(u.ctx, u.key, u.id, int32(n), tmp.key, obj.ETag, 0, length)
	// Once copied the bytes are safe in the upload: a temporary object that
	// cannot be deleted costs storage, not data, and is only logged.
	u.removeStaged(tmp.key)
	if err != nil {
		return fmt.Errorf("copy staged part %d of %q from %q: %w", n, u.key, tmp.key, err)
	}
	part.Size = length
	u.add(part)
	return nil
}

// removeStaged deletes the temporary object of a staged part, best effort.
func (u *upload) removeStaged(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	if err := u.w.st.Delete(ctx, key); err != nil {
		u.w.log.Warn("temporary object of a staged part not deleted; it is left for cleanup", "key", key, "file", u.key, "err", err)
		return
	}
	u.w.log.Debug("temporary object of a staged part deleted", "key", key, "file", u.key)
}

// run executes send of part n in the background under one of the Writer's
// upload slots. done runs before the upload stops counting as running, so
// the memory it frees is visible to waiting writers first. A part number
// sent again waits for the earlier sends to finish: the last one to reach
// the server wins, and it must be the newest bytes.
func (u *upload) run(n int, send func() error, done func()) {
	if u.numbers[n] {
		u.wg.Wait()
	}
	u.numbers[n] = true
	u.w.budget.uploadStarted()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer u.w.budget.uploadEnded()
		defer done()
		if err := u.w.slots.Acquire(u.ctx, 1); err != nil {
			u.fail(err)
			return
		}
		defer u.w.slots.Release(1)
		if u.failure() != nil {
			return
		}
		if err := send(); err != nil {
			u.fail(err)
		}
	}()
}

func (u *upload) add(p store.Part) {
	u.mu.Lock()
	u.parts[p.Number] = p
	u.mu.Unlock()
}

// fail keeps the first error and stops the other parts.
func (u *upload) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
	u.cancel()
}

func (u *upload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// wait waits for every part sent so far. A cancelled ctx stops the wait, not
// the parts.
func (u *upload) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return u.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// complete waits for the parts and assembles parts 1..last into the object;
// parts numbered past last (a file truncated after they were sent) are
// left out, and S3 discards them.
func (u *upload) complete(ctx context.Context, last int) (store.Object, error) {
	if err := u.wait(ctx); err != nil {
		return store.Object{}, err
	}
	parts := make([]store.Part, 0, last)
	u.mu.Lock()
	for n := 1; n <= last; n++ {
		if p, ok := u.parts[int32(n)]; ok {
			parts = append(parts, p)
		}
	}
	u.mu.Unlock()
	if len(parts) != last {
		return store.Object{}, fmt.Errorf("complete %q: %d of parts 1..%d were stored", u.key, len(parts), last)
	}
	obj, err := u.w.st.CompleteMultipart(u.ctx, u.key, u.id, parts, u.cond)
	if err != nil {
		return store.Object{}, fmt.Errorf("complete multipart upload of %q (%d parts): %w", u.key, len(parts), err)
	}
	u.cancel()
	u.w.log.Debug("multipart upload completed", "key", u.key, "parts", len(parts))
	// A multipart object has the metadata its upload was created with,
	// whatever SetOptions said after.
	obj.Metadata = u.md
	if obj.Metadata == nil {
		obj.Metadata = store.Metadata{}
	}
	return obj, nil
}

// abort stops the parts still running and discards the upload, so no parts
// are left behind to be paid for.
func (u *upload) abort() {
	u.cancel()
	u.wg.Wait()
	timeout := abortTimeout
	if err := u.failure(); err != nil && store.IsTransient(err) {
		timeout = unreachableAbortTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := u.w.st.AbortMultipart(ctx, u.key, u.id)
	if err != nil && !errors.Is(err, store.ErrNoSuchUpload) {
		u.w.log.Error("abort multipart upload failed; tried again at unmount, else left for partfs cleanup", "key", u.key, "err", err)
		u.w.failures.abortFailed(u.key, u.id)
		return
	}
	u.w.log.Debug("multipart upload aborted", "key", u.key)
}
