package s3

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptrace"
	"sync"
	"time"
)

// stallError is the cause a watch gives the context of a request on which
// no byte moved for too long.
type stallError struct {
	phase string
	limit time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("no progress for %v while %s", e.limit, e.phase)
}

// watch abandons a request on which nothing moves: its context is
// cancelled (the transport then closes the connection) once no byte has
// been sent or received for Options.IOTimeout, or, while the server is
// working on an answer, for as long as the operation may take to start
// answering (Options.ResponseHeaderTimeout for the slow ones, IOTimeout
// for the others). The phases come from httptrace: connection obtained,
// request body read by the transport, request written, first answer
// byte; a GET body is watched only while a Read is waiting for it, so a
// reader that pauses is never taken for a stalled connection.
type watch struct {
	parent context.Context // the caller's
	ctx    context.Context
	cancel context.CancelCauseFunc
	io     time.Duration // the limit while bytes should be moving
	answer time.Duration // the limit while the server prepares its answer

	mu    sync.Mutex
	timer *time.Timer   // guarded by mu
	phase string        // guarded by mu
	limit time.Duration // guarded by mu
	ended bool          // guarded by mu
}

// watch starts watching a request made with the returned watch's ctx. slow
// marks operations the server may think about for long before answering
// (CompleteMultipart, UploadPartCopy, CopyObject). end must be called once
// the request is over (for a GET, once its body is closed).
func (s *Store) watch(ctx context.Context, slow bool) *watch {
	w := &watch{parent: ctx, io: s.opts.IOTimeout, answer: s.opts.IOTimeout}
	if slow {
		w.answer = max(s.opts.ResponseHeaderTimeout, s.opts.IOTimeout)
	}
	ctx, w.cancel = context.WithCancelCause(ctx)
	w.ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:              func(httptrace.GotConnInfo) { w.arm("sending the request", w.io) },
		WroteRequest:         func(httptrace.WroteRequestInfo) { w.arm("waiting for the answer", w.answer) },
		GotFirstResponseByte: func() { w.arm("receiving the answer", w.answer) },
	})
	w.mu.Lock()
	w.phase, w.limit = "connecting", w.io+s.opts.ConnectTimeout
	w.timer = time.AfterFunc(w.limit, w.fire)
	w.mu.Unlock()
	return w
}

// arm restarts the clock of phase with limit.
func (w *watch) arm(phase string, limit time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return
	}
	w.phase, w.limit = phase, limit
	w.timer.Reset(limit)
}

// pause stops the clock until the next arm.
func (w *watch) pause() {
	w.mu.Lock()
	w.timer.Stop()
	w.mu.Unlock()
}

func (w *watch) fire() {
	w.mu.Lock()
	err := &stallError{phase: w.phase, limit: w.limit}
	ended := w.ended
	w.mu.Unlock()
	if !ended {
		w.cancel(err)
	}
}

// end stops the watch and releases its context.
func (w *watch) end() {
	w.mu.Lock()
	w.ended = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// sendBody is a request body whose every read by the transport counts as
// progress. It embeds *bytes.Reader, so the SDK can still seek it to
// rewind and measure it.
type sendBody struct {
	*bytes.Reader
	w *watch
}

func (s *Store) sendBody(w *watch, data []byte) *sendBody {
	return &sendBody{Reader: bytes.NewReader(data), w: w}
}

func (b *sendBody) Read(p []byte) (int, error) {
	b.w.arm("sending the request", b.w.io)
	return b.Reader.Read(p)
}
