package fs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/partfs/partfs/store"
)

// Fast close (Options.FastClose): close returns once the file's bytes are
// held in the write buffer, and the upload runs in the background. See
// "Fast close" in the package comment.

// Defaults of the fast-close options.
const (
	// A program's rename after close arrives within milliseconds; the
	// margin is for a machine under load. Throughput does not suffer, as
	// uploads overlap.
	defaultUploadDelay    = 500 * time.Millisecond
	defaultPutConcurrency = 16
)

// uploads runs the background uploads of closed files.
type uploads struct {
	slots    chan struct{} // Options.PutConcurrency tokens
	mu       sync.Mutex
	inflight int           // queued or running; guarded by mu
	idle     chan struct{} // closed when inflight drops to 0; guarded by mu
	failures atomic.Int64  // background uploads that failed
}

func newUploads(n int) *uploads {
	return &uploads{slots: make(chan struct{}, n)}
}

func (u *uploads) begin() {
	u.mu.Lock()
	if u.inflight == 0 {
		u.idle = make(chan struct{})
	}
	u.inflight++
	u.mu.Unlock()
}

func (u *uploads) end() {
	u.mu.Lock()
	u.inflight--
	if u.inflight == 0 {
		close(u.idle)
	}
	u.mu.Unlock()
}

// idleCh returns a channel closed once no upload is queued or running.
func (u *uploads) idleCh() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.inflight == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return u.idle
}

// queueUpload schedules the upload of the file's changes after
// Options.UploadDelay, during which a rename, a metadata change or an
// unlink is applied to the file before anything is sent (rsync's temporary
// file is uploaded once, under its final name).
func (n *fileNode) queueUpload() {
	fsys := n.fsys
	n.mu.Lock()
	st := n.state
	if st == nil || n.unlinked || n.queued || !st.Dirty() {
		n.mu.Unlock()
		return
	}
	n.queued = true
	n.mu.Unlock()
	fsys.uploads.begin()
	time.AfterFunc(fsys.opts.UploadDelay, func() {
		fsys.uploads.slots <- struct{}{}
		go func() {
			defer func() {
				<-fsys.uploads.slots
				fsys.uploads.end()
			}()
			n.backgroundUpload()
		}()
	})
}

// backgroundUpload stores the queued file, unless something else did
// meanwhile (fsync, unlink). A failure is kept for the file's next close or
// fsync, and, with the bytes still held (writeback's KeepUnsent), the file
// stays dirty for a later sync: the next close, fsync of it or of a
// directory above it, or unmount.
func (n *fileNode) backgroundUpload() {
	n.op.RLock()
	n.mu.Lock()
	queued, st, unlinked := n.queued, n.state, n.unlinked
	n.queued = false
	n.mu.Unlock()
	if !queued || st == nil || !st.Dirty() || unlinked {
		n.op.RUnlock()
		n.dropIdleState()
		return
	}
	err := n.syncHeld(context.Background()) // clears bgErr when it succeeds
	n.op.RUnlock()
	if err != nil {
		key := n.keyNow()
		n.mu.Lock()
		n.bgErr = err
		n.mu.Unlock()
		n.fsys.uploads.failures.Add(1)
		n.fsys.log.Error("upload after close failed: the file is NOT stored; its next close or fsync reports it",
			"key", key, "err", err)
		return
	}
	n.dropIdleState()
}

// dropIdleState drops a clean state (or one of an unlinked file) that no
// handle uses any more, as the last release would have.
func (n *fileNode) dropIdleState() {
	n.mu.Lock()
	st := n.state
	if st == nil || n.users > 0 || n.queued || (st.Dirty() && !n.unlinked) {
		n.mu.Unlock()
		return
	}
	n.state = nil
	n.fsys.removeState(n)
	n.mu.Unlock()
	st.Discard()
}

// awaitUploads waits until no background upload is queued or running.
func (fsys *filesystem) awaitUploads(ctx context.Context) error {
	select {
	case <-fsys.uploads.idleCh():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("uploads after close still running: %w", context.Cause(ctx))
	}
}

// takeUploadErr returns, once, the failure of the file's last background
// upload.
func (n *fileNode) takeUploadErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.bgErr
	n.bgErr = nil
	return err
}

// rekey moves a file whose changes have not started going out to key
// without a request (see writeback.File.Rekey). It reports whether it did.
// The caller holds op exclusively.
func (n *fileNode) rekey(key string, cond store.Condition) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.state
	if st == nil || n.unlinked || !st.Dirty() || !st.Rekey(key, cond) {
		return false
	}
	n.key = key
	n.obj.Key = key
	n.exists = false // what S3 holds under key, if anything, is replaced at upload
	n.attrs.ctime = now()
	st.SetOptions(n.putOptionsLocked())
	return true
}

// syncBelow makes every file with changes below prefix durable, as fsync of
// a directory does in fast-close mode, and returns one error naming each
// that failed.
// Files whose background upload failed and whose bytes are gone (no longer
// dirty) are reported too.
func (fsys *filesystem) syncBelow(ctx context.Context, prefix string) error {
	var errs []error
	for _, n := range fsys.stateNodes() {
		key := n.keyNow()
		if !strings.HasPrefix(key, prefix) || n.dirty() {
			continue
		}
		n.mu.Lock()
		err := n.bgErr
		n.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("sync %q: %w", key, err))
		}
	}
	return errors.Join(append(errs, fsys.syncStates(ctx, prefix, fsys.opts.PutConcurrency))...)
}

// UploadFailures counts the background uploads (fast close) that failed.
func (r *Root) UploadFailures() int64 { return r.fsys.uploads.failures.Load() }
