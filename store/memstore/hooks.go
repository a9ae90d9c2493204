package memstore

import (
	"context"
	"crypto/md5"
	"fmt"
)

// Op describes one call, as given to the fault hooks and kept in the call log.
type Op struct {
	Name     string // the store.Store method: "Put", "UploadPart", ...
	Key      string // the key written, read or listed (the prefix for List and ListMultipart)
	UploadID string // multipart calls
	Part     int32  // UploadPart and UploadPartCopy
	Src      string // Copy and UploadPartCopy
	Off      int64  // Get and UploadPartCopy
	Length   int64  // Get and UploadPartCopy
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

// before checks ctx and the fault hook. The hook runs without mu held so it
// may call back into the Store.
func (s *Store) before(ctx context.Context, op Op) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q: %w", op.Name, op.Key, err)
	}
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	return injected(f, op)
}

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
