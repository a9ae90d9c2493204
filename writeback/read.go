package writeback

import (
	"context"
	"io"
)

// ReadAt reads the file as the application wrote it. Bytes in parts already
// sent can only be read back once they are stored, so such a read first
// makes the file durable, as fsync would.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	defer f.publishLocked()
	if off >= f.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), f.size-off)
	plan := &f.w.plan
	if f.dirty {
		for k := plan.Part(off); k <= plan.Part(off+want-1); k++ {
			_, ok := f.sent[k]
			if s := f.staged[k]; s != nil && off < plan.Start(k)+s.sent {
				ok = true
			}
			if ok {
				if _, err := f.syncLocked(ctx); err != nil {
					return 0, err
				}
				break
			}
		}
	}
	if !f.dirty {
		if err := f.readBase(ctx, p[:want], off); err != nil {
			return 0, err
		}
		return short(want, len(p))
	}
	for pos := off; pos < off+want; {
		k := plan.Part(pos)
		start := plan.Start(k)
		q := p[pos-off : min(want, start+plan.Size(k)-off)]
		if err := f.readPartLocked(ctx, q, pos, k); err != nil {
			return int(pos - off), err
		}
		pos += int64(len(q))
	}
	return short(want, len(p))
}

// readPartLocked fills q with the file's bytes at pos, all within part k
// and, if k is staged, past its bytes already sent.
func (f *File) readPartLocked(ctx context.Context, q []byte, pos int64, k int) error {
	start := f.w.plan.Start(k)
	if st := f.staged[k]; st != nil {
		return f.readBufferLocked(ctx, q, pos, start+st.sent, &st.piece)
	}
	s := f.open[k]
	if s == nil {
		return f.readPlainLocked(ctx, q, pos)
	}
	lo, hi := pos-start, pos-start+int64(len(q))
	if start+lo < f.baseLimit && !s.valid.covers(lo, min(hi, f.baseLimit-start)) {
		// Read-modify-write (a database's pages): fetch the rest of the
		// part once rather than one GET per read.
		if err := f.completeSlotLocked(ctx, k, s, min(f.w.plan.Size(k), f.size-start)); err != nil {
			return err
		}
	}
	return f.readBufferLocked(ctx, q, pos, start, s)
}

// readBufferLocked fills q with the file's bytes at pos >= at, where s holds
// the file's bytes from at on in its valid ranges; the rest is read plain.
func (f *File) readBufferLocked(ctx context.Context, q []byte, pos, at int64, s *slot) error {
	lo, hi := pos-at, pos-at+int64(len(q))
	var err error
	s.valid.gaps(lo, hi, func(a, b int64) {
		if err == nil {
			err = f.readPlainLocked(ctx, q[a-lo:b-lo], at+a)
		}
	})
	for _, r := range s.valid {
		if a, b := max(r.lo, lo), min(r.hi, hi); a < b {
			copy(q[a-lo:b-lo], s.buf[a:b])
		}
	}
	return err
}

func short(got int64, asked int) (int, error) {
	if int(got) < asked {
		return int(got), io.EOF
	}
	return int(got), nil
}
