package writeback

// This file is a placeholder that fixes the API the fs package codes against
// while the engine is written; it is replaced by the real implementation.

import (
	"context"
	"errors"
	"log/slog"

	"github.com/partfs/partfs/store"
)

// ErrUnsupported is returned for edits this version cannot make yet.
var ErrUnsupported = errors.New("writeback: unsupported edit")

// Options configures a Writer. Zero values get defaults in New.
type Options struct {
	PartSize    int64 // base part size, >= store.MinPartSize; default 8 MiB
	Concurrency int   // parts in flight across all files; default 4
	BufferBytes int64 // global budget of buffered dirty bytes; default 512 MiB
	Logger      *slog.Logger
}

// Writer owns the global write budget and the upload engine.
type Writer struct{}

// New returns a Writer uploading through st.
func New(st store.Store, opts Options) (*Writer, error) { return &Writer{}, nil }

// Open returns a dirty-file state for key. base is the existing object the
// file starts from (nil: the file starts empty, as after O_TRUNC or create).
func (w *Writer) Open(key string, base *store.Object, opts store.PutOptions) *File { return &File{} }

// File is one file's dirty state. Its methods are safe for concurrent use.
type File struct{}

// WriteAt writes p at off. It may block on the global budget (ctx cancels the wait).
func (f *File) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, ErrUnsupported
}

// ReadAt reads the file as the application wrote it (its own writes over the base).
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, ErrUnsupported
}

// Size is the file's current size.
func (f *File) Size() int64 { return 0 }

// Truncate sets the file's size.
func (f *File) Truncate(ctx context.Context, size int64) error { return ErrUnsupported }

// SetOptions replaces the metadata used when the object is next written.
func (f *File) SetOptions(opts store.PutOptions) {}

// Dirty reports whether the file has changes not yet durable in S3.
func (f *File) Dirty() bool { return false }

// Sync makes every change durable (PutObject or Complete) and returns the
// stored object; the File stays usable and later writes edit that object.
// Any failure aborts the upload and is returned.
func (f *File) Sync(ctx context.Context) (store.Object, error) { return store.Object{}, ErrUnsupported }

// Discard drops the dirty state, aborting any multipart upload.
func (f *File) Discard(ctx context.Context) {}
