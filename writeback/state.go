package writeback

import (
	"fmt"
)

// partState is where the bytes of one part of a dirty File are. Each part
// is in exactly one state; the File keeps the parts of the first three in
// one map each (open, staged, sent) and untouched parts in none.
type partState int

const (
	// partUntouched: the part's bytes are the base object's below
	// baseLimit, zeros above; nothing of it is in memory or sent.
	partUntouched partState = iota
	// partOpen: its bytes are in a slot buffer being edited (File.open).
	partOpen
	// partStaged: a part too large to buffer whole; its first bytes went
	// out as pieces of a temporary upload and the piece after them is
	// being edited (File.staged).
	partStaged
	// partSent: its bytes went out as UploadPart or UploadPartCopy and are
	// no longer in memory (File.sent holds how many).
	partSent
)

func (s partState) String() string {
	switch s {
	case partUntouched:
		return "untouched"
	case partOpen:
		return "open"
	case partStaged:
		return "staged"
	case partSent:
		return "sent"
	}
	return fmt.Sprintf("partState(%d)", int(s))
}

// stateLocked returns the state of part k.
func (f *File) stateLocked(k int) partState {
	switch {
	case f.open[k] != nil:
		return partOpen
	case f.staged[k] != nil:
		return partStaged
	}
	if _, ok := f.sent[k]; ok {
		return partSent
	}
	return partUntouched
}

// sentAtLocked reports whether the byte at pos, in part k, has been sent:
// part k is sent, or staged with pos among its pieces already sent.
func (f *File) sentAtLocked(k int, pos int64) bool {
	switch f.stateLocked(k) {
	case partSent:
		return true
	case partStaged:
		return pos-f.w.plan.Start(k) < f.staged[k].sent
	}
	return false
}

// recycleLocked gives buffer b, which this file holds, back to the budget.
func (f *File) recycleLocked(b []byte) {
	f.held -= int64(cap(b))
	f.w.recycle(b)
}

// handOverLocked records that buffer b, which this file held, now belongs
// to an upload, which recycles it once sent; it returns b.
func (f *File) handOverLocked(b []byte) []byte {
	f.held -= int64(cap(b))
	return b
}

// checkLocked returns an error describing the first broken invariant of
// the part states, or nil: no part is in two states, and only parts of the
// right kind are open or staged; every sent part went out with the length
// the plan and the file's size give it; a staged part's pieces lie within
// the part and the file; and the bytes of the buffers the file holds are
// the bytes it took from the budget. Tests call it after every operation.
func (f *File) checkLocked() error {
	if !f.dirty && len(f.open)+len(f.staged)+len(f.sent) > 0 {
		return fmt.Errorf("%q: clean, with %d open, %d staged and %d sent parts", f.key, len(f.open), len(f.staged), len(f.sent))
	}
	states := map[int][]partState{}
	for k := range f.open {
		states[k] = append(states[k], partOpen)
	}
	for k := range f.staged {
		states[k] = append(states[k], partStaged)
	}
	for k := range f.sent {
		states[k] = append(states[k], partSent)
	}
	for k, in := range states {
		if len(in) > 1 {
			return fmt.Errorf("%q: part %d is %v at once", f.key, k, in)
		}
	}
	plan := &f.w.plan
	var held int64
	for k, s := range f.open {
		if f.w.staged(k) || int64(cap(s.buf)) > plan.Size(k) {
			return fmt.Errorf("%q: part %d of %d bytes is open with a %d-byte buffer", f.key, k, plan.Size(k), cap(s.buf))
		}
		held += int64(cap(s.buf))
	}
	for k, s := range f.staged {
		end := s.sent + int64(len(s.piece.buf))
		if !f.w.staged(k) || end > plan.Size(k) || plan.Start(k)+s.sent > f.size {
			return fmt.Errorf("%q: part %d of %d bytes is staged with %d bytes sent and %d held; the file has %d of it",
				f.key, k, plan.Size(k), s.sent, len(s.piece.buf), f.size-plan.Start(k))
		}
		held += int64(cap(s.piece.buf))
	}
	for k, n := range f.sent {
		if want := min(plan.Size(k), f.size-plan.Start(k)); n != want {
			return fmt.Errorf("%q: part %d was sent with %d bytes; the plan and the size %d give it %d", f.key, k, n, f.size, want)
		}
	}
	if held != f.held {
		return fmt.Errorf("%q: buffers of %d bytes held, %d taken from the budget", f.key, held, f.held)
	}
	return nil
}
