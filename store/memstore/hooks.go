package memstore

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"

	"github.com/partfs/partfs/store"
)

// Hang, returned by a fault hook, makes the call wait until its context
// ends and then fail with the context's error, as a request sent to a
// server that never answers (a blackhole) would.
var Hang = errors.New("memstore: hang until the context ends")

// BodyFault is what SetBodyFault's hook asks of one Get body. The zero
// BodyFault delivers the body untouched.
type BodyFault struct {
	// Cut, when positive, ends the body after that many bytes with a
	// transient error wrapping io.ErrUnexpectedEOF, as a reset connection.
	Cut int64
	// Stall, with Cut, makes the body wait after Cut bytes until the
	// context of the Get ends, instead of failing at once.
	Stall bool
}

// SetBodyFault installs f, consulted for every Get that returns a body.
// nil removes it.
func (s *Store) SetBodyFault(f func(op Op) BodyFault) {
	s.mu.Lock()
	s.bodyFault = f
	s.mu.Unlock()
}

// Op describes one call, as given to the fault hooks and kept in the call log.
type Op struct {
	Name     string // the store.Store method: "Put", "UploadPart", ...
	Key      string // the key written, read or listed (the prefix for List and ListMultipart)
	UploadID string // multipart calls
	Part     int32  // UploadPart and UploadPartCopy
	Src      string // Copy and UploadPartCopy
	Off      int64  // Get and UploadPartCopy
	Length   int64  // Get and UploadPartCopy
	// Cond is the condition of Put, CreateMultipart and CompleteMultipart,
	// and DeleteIfMatch's ETag as Cond.IfMatch.
	Cond store.Condition
}

// Call is one entry of the call log.
type Call struct {
	Op
	Size int64          // body bytes sent (Put, UploadPart) or returned (Get)
	MD5  [md5.Size]byte // the Content-MD5 sent with Put and UploadPart
	Err  error          // what the call returned
}

// SetFault installs f, consulted at the start of every call: a non-nil
// return fails the call, before it has any effect, with that error wrapped
// (wrap store.ErrTransient to model a retryable failure). nil removes it.
func (s *Store) SetFault(f func(op Op) error) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// SetFaultAfter installs f, consulted after a call has taken effect: a
// non-nil return fails the call although the store has acted, as when a
// reply is lost on the way back. nil removes it.
func (s *Store) SetFaultAfter(f func(op Op) error) {
	s.mu.Lock()
	s.faultAfter = f
	s.mu.Unlock()
}

// Calls returns a copy of the call log, oldest first, failed calls included.
func (s *Store) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsTo returns the logged calls to the named method that succeeded.
func (s *Store) CallsTo(name string) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Name == name && c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls empties the call log.
func (s *Store) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

// errHang tells before that the hook asked for Hang.
var errHang = errors.New("hang")

// before checks ctx and the fault hook. The hook runs without mu held so it
// may call back into the Store.
func (s *Store) before(ctx context.Context, op Op) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q: %w", op.Name, op.Key, err)
	}
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	err := injected(f, op)
	if err == errHang {
		<-ctx.Done()
		return fmt.Errorf("memstore: %s %q: no answer: %w", op.Name, op.Key, context.Cause(ctx))
	}
	return err
}

// body is a Get body: the stored bytes, through the body fault hook.
type body struct {
	ctx   context.Context
	op    Op
	data  []byte
	etag  string
	fault BodyFault
	done  int64
}

var _ store.Versioned = (*body)(nil)

func (s *Store) newBody(ctx context.Context, op Op, data []byte, etag string) io.ReadCloser {
	s.mu.Lock()
	f := s.bodyFault
	s.mu.Unlock()
	b := &body{ctx: ctx, op: op, data: data, etag: etag}
	if f != nil {
		b.fault = f(op)
	}
	return b
}

func (b *body) ETag() string { return b.etag }

func (b *body) Read(p []byte) (int, error) {
	rest := b.data[b.done:]
	if cut := b.fault.Cut; cut > 0 && cut < int64(len(b.data)) {
		if b.done >= cut {
			if b.fault.Stall {
				<-b.ctx.Done()
				return 0, fmt.Errorf("memstore: %s %q body stalled at %d: %w", b.op.Name, b.op.Key, b.op.Off+b.done, context.Cause(b.ctx))
			}
			return 0, fmt.Errorf("memstore: %s %q body cut at %d: %w: %w", b.op.Name, b.op.Key, b.op.Off+b.done, store.ErrTransient, io.ErrUnexpectedEOF)
		}
		rest = b.data[b.done:cut]
	}
	if len(rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, rest)
	b.done += int64(n)
	return n, nil
}

func (b *body) Close() error { return nil }

// after consults the after-effect fault hook.
func (s *Store) after(op Op) error {
	s.mu.Lock()
	f := s.faultAfter
	s.mu.Unlock()
	return injected(f, op)
}

func injected(f func(Op) error, op Op) error {
	if f == nil {
		return nil
	}
	if err := f(op); err != nil {
		if errors.Is(err, Hang) {
			return errHang
		}
		return fmt.Errorf("memstore: %s %q part %d: injected: %w", op.Name, op.Key, op.Part, err)
	}
	return nil
}

// record appends a call to the log; it is deferred with a pointer to the
// method's named error result.
func (s *Store) record(op Op, size int, sum [md5.Size]byte, err *error) {
	s.mu.Lock()
	s.calls = append(s.calls, Call{Op: op, Size: int64(size), MD5: sum, Err: *err})
	s.mu.Unlock()
}
