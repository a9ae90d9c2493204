package writeback

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/partfs/partfs/store"
)

// Defaults applied by New.
const (
	DefaultPartSize    int64 = 8 << 20
	DefaultConcurrency       = 4
	DefaultBufferBytes int64 = 512 << 20
	defaultStall             = 10 * time.Second
	firstBuffer        int64 = 64 << 10 // a new file's buffer starts this small and doubles
	smallBuffer        int64 = 1 << 20  // up to this size; then it gets the whole part
)

// Options configures a Writer. Zero values get defaults in New.
type Options struct {
	PartSize    int64 // base part size, at least 5 MiB
	Concurrency int   // part uploads in flight across all files
	BufferBytes int64 // budget of buffered dirty bytes across all files
	// StallTimeout is how long a writer waits for buffer memory while no
	// upload is running before it gets ErrBufferExhausted.
	StallTimeout time.Duration
	// StagePrefix is where parts too large to buffer whole are staged, each
	// as a temporary object under StagePrefix (see IsStageKey) that is
	// copied into the file's upload and then deleted. The caller keeps these
	// keys out of listings and removes the ones a crash leaves behind.
	// Empty: no part is staged, parts stop at half of BufferBytes, and
	// Plan().MaxSize is smaller (about 2.4 TiB with the default budget).
	StagePrefix string
	// KeepUnsent: a failed Sync of a file none of whose bytes went out as
	// parts (a file stored with one PutObject) keeps its changes, still
	// dirty, for a later Sync, instead of dropping them. The caller then
	// owns the retry; the buffers stay charged to the budget until then.
	KeepUnsent bool
	// ConflictKey names the conflict copy of key: where a file's changes
	// are stored when another writer stored key first (conflict.go). nil,
	// or "" for a key, keeps no copy: the lost race is only an error.
	ConflictKey func(key string) string
	Logger      *slog.Logger

	// Tests shrink S3's limits to reach them quickly.
	minPartSize int64
	maxParts    int
	planStep    int
}

// Writer owns the write budget and the upload engine shared by all files.
type Writer struct {
	st     store.Store
	log    *slog.Logger
	plan   Plan
	budget *budget
	slots  *semaphore.Weighted // part uploads in flight
	// wholePart is the largest part buffered whole; larger parts are staged
	// in pieces of pieceSize (see stage.go).
	wholePart   int64
	pieceSize   int64
	stagePrefix string
	// openSlots is how many parts one file may hold open for editing: a
	// quarter of the budget, so a few random writers share it.
	openSlots   int
	keepUnsent  bool
	conflictKey func(string) string
	conflicts   conflicts
	// noCreateCond: the server refused a condition on
	// CreateMultipartUpload (upload.go).
	noCreateCond atomic.Bool
	failures     *failures
}

// New returns a Writer uploading through st.
func New(st store.Store, opts Options) (*Writer, error) {
	if opts.minPartSize == 0 {
		opts.minPartSize = store.MinPartSize
	}
	if opts.maxParts == 0 {
		opts.maxParts = store.MaxParts
	}
	if opts.planStep == 0 {
		opts.planStep = planStep
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.BufferBytes == 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = defaultStall
	}
	if opts.PartSize < opts.minPartSize || opts.PartSize > store.MaxPartSize {
		return nil, fmt.Errorf("writeback: part size %d outside S3's %d..%d bytes", opts.PartSize, opts.minPartSize, store.MaxPartSize)
	}
	if opts.BufferBytes < 2*opts.PartSize {
		return nil, fmt.Errorf("writeback: write buffer %d must hold at least two parts of %d bytes (one filling, one uploading)", opts.BufferBytes, opts.PartSize)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// With a StagePrefix a part is buffered whole up to a quarter of the
	// budget: a sequential writer holds the part it fills and the one still
	// uploading, which leaves half the budget to other files. Larger parts
	// are staged, and then hold one piece of PartSize (plus the pieces
	// uploading), whatever their size. Without one every part is buffered
	// whole, and parts stop at half the budget so that one always fits
	// beside the one uploading before it.
	wholePart := max(opts.BufferBytes/4, opts.PartSize)
	largest := store.MaxPartSize
	if opts.StagePrefix == "" {
		wholePart = opts.BufferBytes / 2
		largest = wholePart
	}
	return &Writer{
		failures:    newFailures(),
		st:          st,
		log:         log,
		plan:        newPlan(opts.PartSize, largest, opts.planStep, opts.maxParts),
		budget:      newBudget(opts.BufferBytes, opts.StallTimeout),
		slots:       semaphore.NewWeighted(int64(opts.Concurrency)),
		wholePart:   wholePart,
		pieceSize:   opts.PartSize,
		stagePrefix: opts.StagePrefix,
		openSlots:   int(max(2, opts.BufferBytes/(4*opts.PartSize))),
		keepUnsent:  opts.KeepUnsent,
		conflictKey: opts.ConflictKey,
	}, nil
}

// staged reports whether part k is too large to be buffered whole. Without
// a StagePrefix the plan has no such part.
func (w *Writer) staged(k int) bool { return w.plan.Size(k) > w.wholePart }

// Plan returns the part-size schedule files follow.
func (w *Writer) Plan() Plan { return w.plan }

// Stats returns a snapshot of the write budget.
func (w *Writer) Stats() BudgetStats { return w.budget.stats() }

// Open returns a dirty-file state for key. base is the stored object the
// file starts from; nil means the file starts empty (create, O_TRUNC), and
// is then written even if the application writes nothing. opts.Cond is what
// the first write requires of the object it replaces (If-Match the ETag the
// file started from, If-None-Match for a new name; zero: nothing); after
// each Sync the file requires the version it stored. SetOptions does not
// change it.
func (w *Writer) Open(key string, base *store.Object, opts store.PutOptions) *File {
	f := &File{w: w, key: key, opts: opts, cond: opts.Cond}
	f.keyNow.Store(&key)
	if base == nil {
		f.editLocked()
	} else {
		b := *base
		f.base = &b
		f.size = b.Size
	}
	f.publishLocked()
	return f
}

// buffer returns an empty buffer of capacity size from the budget, waiting
// for memory if needed.
func (w *Writer) buffer(ctx context.Context, size int64) ([]byte, error) {
	return w.budget.get(ctx, size)
}

// tryBuffer is buffer without waiting.
func (w *Writer) tryBuffer(size int64) ([]byte, bool) { return w.budget.tryGet(size) }

// recycle gives a buffer back to the budget.
func (w *Writer) recycle(b []byte) { w.budget.put(b) }
