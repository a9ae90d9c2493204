package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/partfs/partfs/cache"
	"github.com/partfs/partfs/meta"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/writeback"
)

// Options configures the file system. Zero values get defaults in New.
type Options struct {
	// Store is the bucket. Required.
	Store store.Store
	// Writer uploads written files. Required unless ReadOnly.
	Writer *writeback.Writer
	// Cache serves reads of stored objects. When nil, reads are ranged GETs
	// straight from Store.
	Cache *cache.Cache
	// Prefix is the key prefix mounted as the root: "" for the whole bucket,
	// otherwise ending in "/" (New adds the slash when missing).
	Prefix string
	// UID and GID own objects that carry no uid/gid metadata.
	UID, GID uint32
	// FileMode and DirMode are the permission bits of objects and
	// directories that carry no mode metadata; defaults 0644 and 0755.
	FileMode, DirMode uint32
	// ReadOnly makes every operation that would change the bucket fail
	// with EROFS.
	ReadOnly bool
	// AttrTimeout and EntryTimeout are how long the kernel may cache
	// attributes and names; default 1s each. Negative means no caching.
	AttrTimeout, EntryTimeout time.Duration
	// NegativeTimeout is how long the kernel may remember that a name does
	// not exist; default 1s. Negative means not at all.
	NegativeTimeout time.Duration
	// KernelReadAhead is how far the kernel reads ahead of a sequential
	// reader of this mount, which sets the size of its READ requests: up
	// to MountOptions.MaxRequest each, but never more than the read-ahead,
	// which FUSE caps at 128 KiB when mounting. Mount raises it afterwards
	// through sysfs, which needs root; default 1 MiB, negative leaves the
	// kernel's 128 KiB (README, "Benchmarks", says what it gains). It
	// should stay below a quarter of cache.Options.SequentialSlack, as the
	// kernel's reads ahead arrive out of order by up to twice the
	// read-ahead.
	KernelReadAhead int64
	// StatTTL is how long partfs believes what S3 said about an object
	// (HEAD) or a directory (listing) before asking again; default 1s.
	// NegativeTTL is the same for names found missing; default 1s.
	// Negative means no caching. See "Consistency" in the package comment.
	StatTTL, NegativeTTL time.Duration
	// MaxCopySize is the largest object that rename and metadata changes
	// copy with one CopyObject request; larger ones are copied as parallel
	// UploadPartCopy ranges. Default and upper bound S3's 5 GiB
	// (store.MaxPartSize); tests lower it together with memstore's limit.
	MaxCopySize int64
	// ReplyLimit, when positive, caps how long close (FLUSH) and fsync wait
	// for uploads: past it they return ETIMEDOUT and the changes stay for
	// a later sync (the next fsync, the last close, unmount). It exists to
	// stay within a kernel that aborts the whole FUSE connection when a
	// request goes unanswered too long (Linux's fuse request timeouts).
	ReplyLimit time.Duration
	// Conditional makes every write state the version it replaces:
	// PutObject and CompleteMultipartUpload carry If-Match the ETag the
	// file started from, or If-None-Match for a new name, and the delete of
	// a renamed file's old name is pinned to the version copied. A lost
	// race is ESTALE (see "Many hosts" in the package comment). Off: last
	// writer wins, for servers without conditional writes.
	Conditional bool
	// ConditionalDelete: the server honours If-Match on DeleteObject (AWS
	// since 2025). Otherwise the delete of a renamed file's old name checks
	// the version with a HEAD first (see deleteVersion).
	ConditionalDelete bool
	// FastClose makes close return once the file's bytes are held in the
	// write buffer; the upload runs in the background. fsync of the file,
	// fsync of a directory above it, and SyncAll wait for it. See "Fast
	// close" in the package comment.
	FastClose bool
	// UploadDelay is how long a closed file waits, with FastClose, before
	// its upload starts, so that a rename, metadata change or unlink that
	// follows at once is applied first; default 500ms, negative none.
	UploadDelay time.Duration
	// PutConcurrency bounds the background uploads of closed files in
	// flight, with FastClose; default 16. The parts of large files are
	// bounded by the Writer as well.
	PutConcurrency int
	// MetadataDelay is how long a mode, owner or time change of a stored
	// file waits for a rename or an upload that carries it before it is
	// written by a copy of its own; default 1s, negative writes at once.
	// fsync of the file or of a directory above it, and SyncAll, write it
	// sooner.
	MetadataDelay time.Duration
	// Logger receives errors that have no caller to go to; nil discards.
	Logger *slog.Logger
}

// Root is the root directory of a mounted bucket (or prefix). Mount it with
// Mount, or hand it to go-fuse directly.
type Root struct {
	dirNode
}

var _ = (fusefs.InodeEmbedder)((*Root)(nil))

// filesystem is what every node shares.
type filesystem struct {
	opts      Options
	log       *slog.Logger
	mountTime time.Time

	// meta caches HEAD, listing and directory probe answers.
	meta *meta.Cache

	copyOpts store.CopyOptions
	linkWarn sync.Once // hard links are refused with one log line per mount

	// later is the work done after the operation that asked for it.
	later *later
	// uploads runs the background uploads of FastClose.
	uploads *uploads

	mu    sync.Mutex
	dirty map[*fileNode]struct{} // nodes holding a writeback state; guarded by mu
}

// New returns the root of a file system over opts.Store.
func New(opts Options) (*Root, error) {
	if opts.Store == nil {
		return nil, errors.New("fs: Options.Store is required")
	}
	if opts.Writer == nil && !opts.ReadOnly {
		return nil, errors.New("fs: Options.Writer is required unless ReadOnly")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if strings.HasPrefix(opts.Prefix, "/") {
		return nil, fmt.Errorf("fs: prefix %q must not start with '/'", opts.Prefix)
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o644
	}
	if opts.DirMode == 0 {
		opts.DirMode = 0o755
	}
	opts.FileMode &= 0o7777
	opts.DirMode &= 0o7777
	if opts.AttrTimeout == 0 {
		opts.AttrTimeout = time.Second
	}
	if opts.EntryTimeout == 0 {
		opts.EntryTimeout = time.Second
	}
	if opts.NegativeTimeout == 0 {
		opts.NegativeTimeout = time.Second
	}
	if opts.KernelReadAhead == 0 {
		opts.KernelReadAhead = 1 << 20
	}
	if opts.StatTTL == 0 {
		opts.StatTTL = time.Second
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = time.Second
	}
	switch {
	case opts.UploadDelay == 0:
		opts.UploadDelay = defaultUploadDelay
	case opts.UploadDelay < 0:
		opts.UploadDelay = 0
	}
	if opts.PutConcurrency <= 0 {
		opts.PutConcurrency = defaultPutConcurrency
	}
	switch {
	case opts.MetadataDelay == 0:
		opts.MetadataDelay = defaultMetadataDelay
	case opts.MetadataDelay < 0:
		opts.MetadataDelay = 0
	}
	if opts.MaxCopySize <= 0 || opts.MaxCopySize > store.MaxPartSize {
		opts.MaxCopySize = store.MaxPartSize
	}
	opts.AttrTimeout = max(opts.AttrTimeout, 0)
	opts.EntryTimeout = max(opts.EntryTimeout, 0)
	opts.NegativeTimeout = max(opts.NegativeTimeout, 0)
	opts.StatTTL = max(opts.StatTTL, 0)
	opts.NegativeTTL = max(opts.NegativeTTL, 0)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsys := &filesystem{
		opts:      opts,
		log:       log,
		mountTime: time.Now().Truncate(time.Second),
		copyOpts:  store.CopyOptions{MaxSingle: opts.MaxCopySize},
		dirty:     make(map[*fileNode]struct{}),
		later:     newLater(),
		uploads:   newUploads(opts.PutConcurrency),
		meta:      newMeta(opts, log),
	}
	r := &Root{}
	r.dirNode.init(fsys, opts.Prefix, defaultDirAttrs(fsys))
	return r, nil
}

// SyncAll makes every file written through this mount durable in S3: it
// syncs each dirty state, writes pending metadata changes and finishes the
// deletes of renamed files' old names, and returns one error naming every
// file that failed (errors.Join of per-key errors), or nil. Files unlinked
// while open are skipped, as their data is meant to vanish.
func (r *Root) SyncAll(ctx context.Context) error {
	err := r.fsys.syncStates(ctx, "", syncAllConcurrency)
	// Background uploads still running (fast close) end with the file
	// stored, or with its state dirty again for the report below.
	if werr := r.fsys.awaitUploads(ctx); werr != nil {
		err = errors.Join(err, werr)
	} else if err == nil {
		err = r.fsys.syncStates(ctx, "", syncAllConcurrency)
	}
	return errors.Join(err, r.fsys.writeAllMeta(ctx, ""), r.fsys.finishDeletes(ctx))
}

// syncAllConcurrency bounds the files SyncAll stores at once.
const syncAllConcurrency = 8

// syncStates syncs every dirty state of a file below prefix, up to limit at
// a time, and returns one error naming each file that failed.
func (fsys *filesystem) syncStates(ctx context.Context, prefix string, limit int) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, limit)
	)
	for _, n := range fsys.stateNodes() {
		if !strings.HasPrefix(n.keyNow(), prefix) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := n.syncIfDirty(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("sync %q: %w", n.keyNow(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// DirtyCount reports how many files hold changes not yet durable in S3.
func (r *Root) DirtyCount() int { return len(r.DirtyKeys()) }

// DirtyKeys lists the keys of the files that hold changes not yet durable
// in S3.
func (r *Root) DirtyKeys() []string {
	var keys []string
	for _, n := range r.dirtyNodes() {
		keys = append(keys, n.keyNow())
	}
	for _, n := range r.fsys.metaPendingNodes("") {
		keys = append(keys, n.keyNow())
	}
	for _, d := range r.fsys.dirPendingNodes("") {
		keys = append(keys, d.prefixNow())
	}
	sort.Strings(keys)
	return slices.Compact(keys)
}

func (r *Root) dirtyNodes() []*fileNode {
	var dirty []*fileNode
	for _, n := range r.fsys.stateNodes() {
		if n.dirty() {
			dirty = append(dirty, n)
		}
	}
	return dirty
}

func (fsys *filesystem) addState(n *fileNode) {
	fsys.mu.Lock()
	fsys.dirty[n] = struct{}{}
	fsys.mu.Unlock()
}

func (fsys *filesystem) removeState(n *fileNode) {
	fsys.mu.Lock()
	delete(fsys.dirty, n)
	fsys.mu.Unlock()
}

// stateAt returns a file at key that holds a state not yet stored, if any.
func (fsys *filesystem) stateAt(key string) *fileNode {
	for _, n := range fsys.stateNodes() {
		if n.keyNow() == key && n.dirty() {
			return n
		}
	}
	return nil
}

func (fsys *filesystem) stateNodes() []*fileNode {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	nodes := make([]*fileNode, 0, len(fsys.dirty))
	for n := range fsys.dirty {
		nodes = append(nodes, n)
	}
	return nodes
}
