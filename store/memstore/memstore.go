// Package memstore is an in-memory store.Store that enforces the S3 rules
// partfs builds on, so that unit tests fail where S3 would fail.
//
// # Rules enforced
//
//   - Put and UploadPart check Content-MD5 (store.ErrBadDigest) and S3's size
//     limits (store.ErrTooLarge above Options.MaxPartSize, 5 GiB by default).
//   - Part numbers run 1..store.MaxParts (store.ErrInvalidPart); a re-sent part
//     number replaces the earlier part.
//   - CompleteMultipart wants a non-empty, strictly ascending list of parts that
//     were uploaded with exactly those ETags (store.ErrInvalidPart), and every
//     part but the last at least store.MinPartSize (store.ErrEntityTooSmall).
//     The object's ETag has S3's multipart form: the hex MD5 of the
//     concatenated binary part MD5s, then "-N".
//   - A completed or aborted upload ID answers store.ErrNoSuchUpload, as does
//     an upload ID used with another key.
//   - Get, Copy and UploadPartCopy honour an ETag precondition
//     (store.ErrPrecondition); a copy of itself that keeps the metadata is
//     rejected, as S3 rejects it.
//   - Put and Copy refuse keys longer than S3's 1,024 bytes
//     (store.ErrKeyTooLong).
//   - Conditional writes (store.Condition) are checked as S3 checks them,
//     atomically with the write: Put against the object there; CreateMultipart
//     at once, as MinIO does; CompleteMultipart against the object current
//     when the upload completes, after the upload ID (store.ErrNoSuchUpload
//     comes first) and before the parts. A failed condition is
//     store.ErrPrecondition, including If-Match on a key with no object, and
//     leaves the upload open. DeleteIfMatch deletes only the version named.
//     Options.IgnoreConditions and Options.RejectConditions imitate servers
//     without the feature.
//   - Metadata keys are lower-cased, as S3 returns them; LastModified has
//     whole seconds, as a HEAD request reports it.
//
// Bodies are copied on the way in, so callers may reuse their buffers.
//
// # Ranges
//
// Get clips a range that runs past the end. A Get whose offset is at or past
// the end returns an empty body rather than an error (S3 answers 416
// InvalidRange; store/s3 reports the same empty body), and so does a Get of
// length 0. Both implementations are held to this by store/storetest.
//
// # Test aids
//
// SetFault and SetFaultAfter inject failures before or after a call takes
// effect (the second one models a reply lost after the server acted); a
// fault hook returning Hang makes the call wait until its context ends, as
// a server that accepts a request and never answers; SetBodyFault cuts or
// stalls Get bodies part-way, as a broken or stalled connection would; Calls
// returns a log of every call with its part number, body size and MD5; Uploads
// lists the multipart uploads in progress.
package memstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/partfs/partfs/store"
)

// maxKeyLen is S3's limit on the length of a key, in bytes.
const maxKeyLen = 1024

var _ store.Store = (*Store)(nil)

// Options configures a Store. Zero values get defaults in New.
type Options struct {
	// MaxPartSize lowers S3's 5 GiB limit on one part, one Put, one Copy and
	// one UploadPartCopy range, so that tests reach store.ErrTooLarge without
	// allocating gigabytes. Default store.MaxPartSize.
	MaxPartSize int64
	// MinPartSize lowers S3's 5 MiB minimum for every part but the last, so
	// that tests can fill all 10,000 part numbers with little memory.
	// Default store.MinPartSize.
	MinPartSize int64
	// Now stamps objects and uploads; default time.Now.
	Now func() time.Time
	// IgnoreConditions makes the store accept conditional writes and
	// deletes and act as if they carried no condition, as a server
	// predating conditional writes does.
	IgnoreConditions bool
	// RejectConditions makes the store answer every conditional write and
	// DeleteIfMatch with store.ErrNotImplemented, as a server that refuses
	// the headers does (501 NotImplemented). It wins over IgnoreConditions.
	RejectConditions bool
}

// Store is an in-memory bucket. It is safe for concurrent use.
type Store struct {
	opts Options

	mu         sync.Mutex
	objects    map[string]*object // guarded by mu
	uploads    map[string]*upload // guarded by mu
	nextUpload int                // guarded by mu
	fault      func(Op) error     // guarded by mu
	faultAfter func(Op) error     // guarded by mu
	bodyFault  func(Op) BodyFault // guarded by mu
	calls      []Call             // guarded by mu
}

// object is one stored version. Its data is never modified once stored, so
// readers may keep slices of it without holding mu.
type object struct {
	data        []byte
	etag        string
	modified    time.Time
	meta        store.Metadata
	contentType string
}

// New returns an empty Store.
func New(opts Options) *Store {
	if opts.MaxPartSize <= 0 {
		opts.MaxPartSize = store.MaxPartSize
	}
	if opts.MinPartSize <= 0 {
		opts.MinPartSize = store.MinPartSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{
		opts:    opts,
		objects: make(map[string]*object),
		uploads: make(map[string]*upload),
	}
}

func (s *Store) now() time.Time { return s.opts.Now().UTC().Truncate(time.Second) }

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (obj store.Object, err error) {
	op := Op{Name: "Stat", Key: key}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Object{}, err
	}
	s.mu.Lock()
	o, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return store.Object{}, fmt.Errorf("stat %q: %w", key, store.ErrNotExist)
	}
	obj = o.info(key)
	obj.Metadata = copyMetadata(o.meta)
	return obj, s.after(op)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string, off, length int64, etag string) (rc io.ReadCloser, err error) {
	op := Op{Name: "Get", Key: key, Off: off, Length: length}
	var size int
	defer func() { s.record(op, size, [md5.Size]byte{}, &err) }()
	if err = s.before(ctx, op); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get %q at %d: negative offset", key, off)
	}
	s.mu.Lock()
	o, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, store.ErrNotExist)
	}
	if etag != "" && trimQuotes(etag) != o.etag {
		return nil, fmt.Errorf("get %q pinned to %s, now %s: %w", key, etag, o.etag, store.ErrPrecondition)
	}
	body := clip(o.data, off, length)
	size = len(body)
	if err = s.after(op); err != nil {
		return nil, err
	}
	return s.newBody(ctx, op, body, o.etag), nil
}

// clip returns data[off:off+length], cut at the end of data; length < 0
// means to the end.
func clip(data []byte, off, length int64) []byte {
	size := int64(len(data))
	if off >= size || length == 0 {
		return nil
	}
	end := size
	if length > 0 && length < size-off {
		end = off + length
	}
	return data[off:end]
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, body []byte, sum [md5.Size]byte, opts store.PutOptions) (obj store.Object, err error) {
	op := Op{Name: "Put", Key: key, Cond: opts.Cond}
	defer s.record(op, len(body), sum, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Object{}, err
	}
	if len(key) > maxKeyLen {
		return store.Object{}, fmt.Errorf("put of a %d-byte key: %w", len(key), store.ErrKeyTooLong)
	}
	if int64(len(body)) > s.opts.MaxPartSize {
		return store.Object{}, fmt.Errorf("put %q of %d bytes: %w", key, len(body), store.ErrTooLarge)
	}
	if md5.Sum(body) != sum {
		return store.Object{}, fmt.Errorf("put %q: %w", key, store.ErrBadDigest)
	}
	if err = s.refuse("put", key, opts.Cond); err != nil {
		return store.Object{}, err
	}
	o := &object{
		data:        bytes.Clone(body),
		etag:        hex.EncodeToString(sum[:]),
		modified:    s.now(),
		meta:        copyMetadata(opts.Metadata),
		contentType: opts.ContentType,
	}
	s.mu.Lock()
	err = s.conditionLocked(key, opts.Cond)
	if err == nil {
		s.objects[key] = o
	}
	s.mu.Unlock()
	if err != nil {
		return store.Object{}, fmt.Errorf("put %q: %w", key, err)
	}
	return o.info(key), s.after(op)
}

// refuse is RejectConditions' answer to a write under condition c.
func (s *Store) refuse(what, key string, c store.Condition) error {
	if c.IsZero() || !s.opts.RejectConditions {
		return nil
	}
	return fmt.Errorf("%s %q with %s: %w", what, key, c, store.ErrNotImplemented)
}

// conditionLocked checks c against the object now stored under key.
func (s *Store) conditionLocked(key string, c store.Condition) error {
	if c.IsZero() || s.opts.IgnoreConditions {
		return nil
	}
	o, ok := s.objects[key]
	if c.IfMatch != "" {
		if !ok {
			return fmt.Errorf("%s: no object there: %w", c, store.ErrPrecondition)
		}
		if trimQuotes(c.IfMatch) != o.etag {
			return fmt.Errorf("%s: the object is %s: %w", c, o.etag, store.ErrPrecondition)
		}
	}
	if c.IfNoneMatch && ok {
		return fmt.Errorf("%s: object %s is there: %w", c, o.etag, store.ErrPrecondition)
	}
	return nil
}

// Copy implements store.Store.
func (s *Store) Copy(ctx context.Context, src, dst, srcETag string, opts *store.PutOptions) (obj store.Object, err error) {
	op := Op{Name: "Copy", Key: dst, Src: src}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Object{}, err
	}
	if len(dst) > maxKeyLen {
		return store.Object{}, fmt.Errorf("copy to a %d-byte key: %w", len(dst), store.ErrKeyTooLong)
	}
	if src == dst && opts == nil {
		return store.Object{}, fmt.Errorf("copy %q onto itself without replacing its metadata: illegal copy request", src)
	}
	s.mu.Lock()
	c, err := s.copyLocked(src, dst, srcETag, opts)
	s.mu.Unlock()
	if err != nil {
		return store.Object{}, err
	}
	return c.info(dst), s.after(op)
}

func (s *Store) copyLocked(src, dst, srcETag string, opts *store.PutOptions) (*object, error) {
	o, err := s.sourceLocked("copy", src, srcETag)
	if err != nil {
		return nil, err
	}
	if int64(len(o.data)) > s.opts.MaxPartSize {
		return nil, fmt.Errorf("copy %q of %d bytes: %w", src, len(o.data), store.ErrTooLarge)
	}
	// The data slice is immutable, so the copy shares it. A single-request
	// copy gets the plain MD5 ETag even when the source was multipart.
	sum := md5.Sum(o.data)
	c := &object{data: o.data, etag: hex.EncodeToString(sum[:]), modified: s.now(), meta: o.meta, contentType: o.contentType}
	if opts != nil {
		c.meta, c.contentType = copyMetadata(opts.Metadata), opts.ContentType
	}
	s.objects[dst] = c
	return c, nil
}

// sourceLocked returns the copy source src, checked against srcETag.
func (s *Store) sourceLocked(what, src, srcETag string) (*object, error) {
	o, ok := s.objects[src]
	if !ok {
		return nil, fmt.Errorf("%s from %q: %w", what, src, store.ErrNotExist)
	}
	if srcETag != "" && trimQuotes(srcETag) != o.etag {
		return nil, fmt.Errorf("%s from %q pinned to %s, now %s: %w", what, src, srcETag, o.etag, store.ErrPrecondition)
	}
	return o, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) (err error) {
	op := Op{Name: "Delete", Key: key}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.objects, key)
	s.mu.Unlock()
	return s.after(op)
}

// DeleteIfMatch implements store.Store.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) (err error) {
	op := Op{Name: "DeleteIfMatch", Key: key, Cond: store.Condition{IfMatch: etag}}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return err
	}
	if etag == "" {
		return fmt.Errorf("delete %q if it matches: no ETag given", key)
	}
	if err = s.refuse("delete", key, op.Cond); err != nil {
		return err
	}
	s.mu.Lock()
	if o, ok := s.objects[key]; ok {
		if o.etag != trimQuotes(etag) && !s.opts.IgnoreConditions {
			err = fmt.Errorf("delete %q if it is %s: it is %s: %w", key, trimQuotes(etag), o.etag, store.ErrPrecondition)
		} else {
			delete(s.objects, key)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.after(op)
}

func (o *object) info(key string) store.Object {
	return store.Object{Key: key, Size: int64(len(o.data)), ETag: o.etag, LastModified: o.modified}
}

// copyMetadata copies m with lower-cased keys, as S3 returns them.
func copyMetadata(m store.Metadata) store.Metadata {
	if len(m) == 0 {
		return nil
	}
	c := make(store.Metadata, len(m))
	for k, v := range m {
		c[strings.ToLower(k)] = v
	}
	return c
}

func trimQuotes(etag string) string { return strings.Trim(etag, `"`) }

// Objects returns a copy of the stored keys and their contents, for tests
// that check the bucket directly.
func (s *Store) Objects() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string][]byte, len(s.objects))
	for k, o := range s.objects {
		m[k] = bytes.Clone(o.data)
	}
	return m
}
