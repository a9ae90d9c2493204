package writeback

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"

	"github.com/partfs/partfs/store"
)

// stage is an open staged part: a part too large to be buffered whole. Its
// first sent bytes went out as the numbered pieces of a temporary multipart
// upload of key; the piece after them is being filled in piece. When the
// part is done, finishLocked sends the rest and the temporary object is
// brought into the file's upload with one UploadPartCopy (upload.copyStaged).
type stage struct {
	key    string
	up     *upload // the temporary upload; nil until the first piece goes out
	sent   int64   // bytes of the part sent as pieces, a multiple of the piece size
	pieces int     // pieces sent, numbered 1..pieces
	piece  slot    // the part's bytes [sent, sent+len(piece.buf))
	used   uint64  // File.tick of the last write, for eviction
}

// stageIDLen is the length of the random component of a stage key.
const stageIDLen = 16

// stageKey returns a new key for staging part k of a file: prefix, 16 random
// hex digits, ".part" and the part number, e.g. "p/.partfs-stage/
// 3f9a0c4e1b2d7a65.part129". The random component keeps the keys of two
// files, or of two stagings of one part, apart.
func stageKey(prefix string, k int) string {
	var r [stageIDLen / 2]byte
	_, _ = rand.Read(r[:]) // never fails
	return fmt.Sprintf("%s%x.part%d", prefix, r, k)
}

// IsStageKey reports whether key is one that a Writer with this StagePrefix
// stages parts under (a temporary object, or the key of a temporary
// multipart upload). Callers use it to keep such keys out of listings and to
// find the ones a crash left behind.
func IsStageKey(prefix, key string) bool {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || prefix == "" {
		return false
	}
	id, num, ok := strings.Cut(rest, ".part")
	if !ok || len(id) != stageIDLen || strings.Trim(id, "0123456789abcdef") != "" {
		return false
	}
	n, err := strconv.Atoi(num)
	return err == nil && n >= 1 && n <= store.MaxParts && strconv.Itoa(n) == num
}

// stageLocked returns the open stage of part k, opening it if needed.
func (f *File) stageLocked(ctx context.Context, k int) (*stage, error) {
	if s := f.staged[k]; s != nil {
		return s, nil
	}
	if err := f.makeRoomLocked(ctx, k); err != nil {
		return nil, err
	}
	s := &stage{key: stageKey(f.w.stagePrefix, k)}
	f.staged[k] = s
	return s, nil
}

// writeStagedLocked writes the start of p at pos, in staged part k, and
// returns how much it wrote: at most to the end of the piece. pos must not
// be in the bytes already sent. A write past the current piece first sends
// it and the pieces up to the one written.
func (f *File) writeStagedLocked(ctx context.Context, k int, p []byte, pos int64) (int, error) {
	s, err := f.stageLocked(ctx, k)
	if err != nil {
		return 0, err
	}
	plan := &f.w.plan
	start, piece := plan.Start(k), f.w.pieceSize
	lo := pos - start
	if at := lo - lo%piece; at > s.sent {
		if err := f.advanceLocked(ctx, k, s, at); err != nil {
			return 0, err
		}
	}
	lo -= s.sent
	hi := min(lo+int64(len(p)), piece, plan.Size(k)-s.sent)
	if err := f.extendPieceLocked(ctx, k, s, hi, lo); err != nil {
		return 0, err
	}
	copy(s.piece.buf[lo:hi], p)
	s.piece.valid = s.piece.valid.add(lo, hi)
	f.tick++
	s.used = f.tick
	f.size = max(f.size, start+s.sent+hi)
	return int(hi - lo), nil
}

// extendPieceLocked makes the current piece of stage s at least n bytes
// long; new bytes before zeroTo are zeros and not valid. The piece buffer is
// paid for whole when it is first needed.
func (f *File) extendPieceLocked(ctx context.Context, k int, s *stage, n, zeroTo int64) error {
	if cap(s.piece.buf) == 0 {
		b, err := f.bufferLocked(ctx, f.w.pieceSize, k)
		if err != nil {
			return err
		}
		s.piece.buf = b
	}
	if old := int64(len(s.piece.buf)); n > old {
		s.piece.buf = s.piece.buf[:n]
		if zeroTo > old {
			clear(s.piece.buf[old:min(zeroTo, n)])
		}
	}
	return nil
}

// stageFullLocked reports whether the writer has filled staged part k to its
// end, so that it can be finished.
func (f *File) stageFullLocked(k int, s *stage) bool {
	n := int64(len(s.piece.buf))
	return n > 0 && s.sent+n == f.w.plan.Size(k) && s.piece.valid.covers(0, n)
}

// advanceLocked sends bytes [s.sent, to) of staged part k as pieces: the
// current piece with the bytes not written filled in; then runs of pieces
// that lie in the base, copied from it server-side as one piece each; then
// pieces read from the base where they overlap it, zeros past it. to is a
// multiple of the piece size, or the part's final length.
func (f *File) advanceLocked(ctx context.Context, k int, s *stage, to int64) error {
	if err := f.startStageLocked(ctx, s); err != nil {
		return err
	}
	start, piece := f.w.plan.Start(k), f.w.pieceSize
	if cap(s.piece.buf) > 0 {
		n := min(piece, to-s.sent)
		if err := f.fillPieceLocked(ctx, s, start, n); err != nil {
			return err
		}
		f.sendPieceLocked(s, s.piece.buf[:n])
		s.piece = slot{}
	}
	for s.sent < to {
		end := s.sent
		for end < to && start+end+min(piece, to-end) <= f.baseLimit {
			end += min(piece, to-end)
		}
		if end > s.sent {
			s.pieces++
			s.up.copyPart(s.pieces, *f.base, start+s.sent, end-s.sent)
			s.sent = end
			continue
		}
		buf, err := f.bufferLocked(ctx, piece, k)
		if err != nil {
			return err
		}
		buf = buf[:min(piece, to-s.sent)]
		if err := f.readPlainLocked(ctx, buf, start+s.sent); err != nil {
			f.recycleLocked(buf)
			return err
		}
		f.sendPieceLocked(s, buf)
	}
	return nil
}

// fillPieceLocked fills the current piece of stage s up to n bytes with the
// file's bytes; start is where the part begins.
func (f *File) fillPieceLocked(ctx context.Context, s *stage, start, n int64) error {
	b := s.piece.buf[:n]
	var err error
	s.piece.valid.gaps(0, n, func(lo, hi int64) {
		if err == nil {
			err = f.readPlainLocked(ctx, b[lo:hi], start+s.sent+lo)
		}
	})
	if err != nil {
		return err
	}
	s.piece.buf, s.piece.valid = b, s.piece.valid.add(0, n)
	return nil
}

// sendPieceLocked sends body as the next piece of stage s; the upload
// recycles body.
func (f *File) sendPieceLocked(s *stage, body []byte) {
	s.pieces++
	s.up.sendPart(s.pieces, f.handOverLocked(body))
	s.sent += int64(len(body))
}

// startStageLocked starts the file's upload and the temporary one of s.
func (f *File) startStageLocked(ctx context.Context, s *stage) error {
	if s.up != nil {
		return nil
	}
	if err := f.startLocked(ctx); err != nil {
		return err
	}
	up, err := f.w.startUploadUnder(ctx, f.up.ctx, s.key, store.PutOptions{})
	if err != nil {
		return err
	}
	s.up = up
	return nil
}

// finishLocked sends what remains of staged part k, up to the file's end,
// and has the upload bring the temporary object in as part k.
func (f *File) finishLocked(ctx context.Context, k int) error {
	s := f.staged[k]
	start := f.w.plan.Start(k)
	length := min(f.w.plan.Size(k), f.size-start)
	if length <= 0 {
		f.dropStageLocked(k)
		return nil
	}
	if length > s.sent {
		if err := f.advanceLocked(ctx, k, s, length); err != nil {
			return err
		}
	} else {
		// A write that failed after sending pieces past the file's end
		// left them zeros; the copy below takes only the part's length.
		f.recycleLocked(s.piece.buf)
		s.piece = slot{}
	}
	f.up.copyStaged(k, s.up, s.pieces, length)
	f.sent[k] = length
	delete(f.staged, k)
	return nil
}

// dropStageLocked discards open staged part k and aborts its temporary upload.
func (f *File) dropStageLocked(k int) {
	s := f.staged[k]
	if s.up != nil {
		s.up.abort()
	}
	f.recycleLocked(s.piece.buf)
	delete(f.staged, k)
}

// stageFailureLocked returns the first failure of a piece of an open stage.
func (f *File) stageFailureLocked() error {
	for _, s := range f.staged {
		if s.up == nil {
			continue
		}
		if err := s.up.failure(); err != nil {
			return err
		}
	}
	return nil
}
