package writeback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/partfs/partfs/store"
)

// Conflicts: every write of a file's changes states the version it replaces
// (store.Condition: If-Match the ETag it started from, If-None-Match for a
// new name). When another writer got there first, S3 refuses it
// (ErrPrecondition), and so does a read of the base the file started from.
// If the Writer keeps conflict copies (Options.ConflictKey) and every
// changed byte is still held (no part sent and released), the file's changes
// are moved onto the conflict key, rebased onto what S3 holds under the
// original key now (bytes the application did not write come from there),
// and stored there; Sync then fails with a *ConflictError. Otherwise Sync
// fails with the precondition error and the changes are dropped.

// ConflictError is a Sync that lost a race with another writer of Key: the
// changes were stored under CopyKey instead. It wraps store.ErrPrecondition.
type ConflictError struct {
	Key     string
	CopyKey string
	Err     error // what S3 answered
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("another writer stored %q first; these changes were stored as %q instead (%v)", e.Key, e.CopyKey, e.Err)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// Conflict is one lost race, as Writer.Conflicts lists it.
type Conflict struct {
	Key     string    `json:"key"`
	CopyKey string    `json:"copy_key,omitempty"` // "" when the bytes could not be kept
	At      time.Time `json:"at"`
}

// maxConflicts bounds the conflicts a Writer remembers.
const maxConflicts = 100

type conflicts struct {
	mu     sync.Mutex
	recent []Conflict // newest last; guarded by mu
	count  int64      // guarded by mu
}

func (c *conflicts) add(x Conflict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	c.recent = append(c.recent, x)
	if len(c.recent) > maxConflicts {
		c.recent = c.recent[len(c.recent)-maxConflicts:]
	}
}

// Conflicts returns the recent lost races, oldest first, and how many there
// were since the Writer was made.
func (w *Writer) Conflicts() ([]Conflict, int64) {
	w.conflicts.mu.Lock()
	defer w.conflicts.mu.Unlock()
	return append([]Conflict(nil), w.conflicts.recent...), w.conflicts.count
}

// putOptionsLocked are the file's options with the condition its next write
// carries.
func (f *File) putOptionsLocked() store.PutOptions {
	o := f.opts
	o.Cond = f.cond
	return o
}

// storedCondLocked records that obj is now the file's version: the next write
// replaces exactly it.
func (f *File) storedCondLocked(obj store.Object) {
	if f.cond.IsZero() || obj.ETag == "" {
		return // unconditional writes stay so
	}
	f.cond = store.Condition{IfMatch: obj.ETag}
}

// conflictLocked handles err, a failed write or base read of the file's
// changes: when it is a lost race and the changes can be kept, it moves them
// onto the conflict key (see above) and reports true; the caller then
// stores them again.
func (f *File) conflictLocked(ctx context.Context, err error) bool {
	if !errors.Is(err, store.ErrPrecondition) || f.cond.IsZero() {
		return false
	}
	switch {
	case f.w.conflictKey == nil:
		f.noteConflictLocked("", "conflict copies are off (--on-conflict error)")
		return false
	case f.conflict != nil:
		return false // the conflict copy itself lost a race: syncLocked reports both
	case len(f.sent) > 0 || len(f.staged) > 0:
		f.noteConflictLocked("", "parts were already sent and their buffers released")
		return false
	}
	if f.up != nil {
		// Created (the server checks conditions at completion only), but
		// nothing sent: nothing is lost by starting again elsewhere.
		f.up.abort()
		f.up = nil
	}
	cur, serr := f.w.st.Stat(ctx, f.key)
	switch {
	case serr == nil:
		f.base = &cur
		f.baseLimit = min(f.baseLimit, cur.Size)
	case errors.Is(serr, store.ErrNotExist):
		f.base, f.baseLimit = nil, 0
	default:
		f.noteConflictLocked("", "the current version could not be read: "+serr.Error())
		return false
	}
	copyKey := f.w.conflictKey(f.key)
	if copyKey == "" {
		f.noteConflictLocked("", "no conflict name fits in S3's key limit")
		return false
	}
	f.conflict = &ConflictError{Key: f.key, CopyKey: copyKey, Err: err}
	f.w.log.Warn("conflict: another writer stored the file first; keeping these changes under a conflict name",
		"key", f.key, "conflict_copy", copyKey, "err", err)
	f.setKeyLocked(copyKey)
	f.cond = store.Condition{IfNoneMatch: true}
	return true
}

// noteConflictLocked records a lost race: its changes kept at copyKey, or,
// with copyKey "", lost for the reason given.
func (f *File) noteConflictLocked(copyKey, lost string) {
	if copyKey == "" {
		f.w.log.Error("conflict: another writer stored the file first; these changes are lost and the application gets ESTALE",
			"key", f.key, "why_not_kept", lost)
	}
	f.w.conflicts.add(Conflict{Key: f.key, CopyKey: copyKey, At: time.Now()})
}
