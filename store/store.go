// Package store is partfs's one boundary to S3.
//
// # The interface
//
// Store is deliberately narrow and speaks in domain terms: objects, ranges,
// listing pages and multipart uploads. Every method takes a context first and
// returns wrapped errors that callers inspect with errors.Is against the
// sentinels below; nothing above this package sees an SDK type.
//
// Implementations:
//   - store/s3: aws-sdk-go-v2 against AWS S3 or any S3-compatible endpoint;
//   - store/memstore: an in-memory fake that enforces S3's rules (part sizes,
//     Content-MD5, part numbers, NoSuchUpload) and has fault hooks for tests;
//   - store/storetest: one conformance suite that both must pass.
//
// # Rules callers rely on
//
// Bodies are passed as byte slices that the caller keeps unchanged until the
// call returns, so a retry re-sends exactly the same bytes. Every Put and
// UploadPart carries the MD5 of its body, which the server checks
// (ErrBadDigest on mismatch). Part numbers run from 1 to MaxParts; a re-sent
// part number replaces the earlier part.
package store

import (
	"context"
	"crypto/md5"
	"errors"
	"io"
	"io/fs"
	"time"
)

// S3's published limits that the rest of partfs plans around.
const (
	MinPartSize   int64 = 5 << 20     // every part but the last
	MaxPartSize   int64 = 5 << 30     // any part, and any UploadPartCopy range
	MaxParts            = 10000       // part numbers 1..MaxParts
	MaxObjectSize int64 = 50e12       // 50 TB
	MaxPutSize    int64 = MaxPartSize // a single PutObject
)

// Sentinel errors. Implementations wrap them with context; callers test with
// errors.Is.
var (
	// ErrNotExist is returned for a missing key or bucket. It satisfies
	// errors.Is(err, fs.ErrNotExist).
	ErrNotExist = notExist{}
	// ErrPrecondition is returned when an If-Match ETag no longer matches
	// (the object changed underneath us), and when the Condition of a write
	// does not hold: another object is there, or none is.
	ErrPrecondition = errors.New("store: precondition failed (object changed)")
	// ErrNoSuchUpload is returned for an upload that was completed, aborted
	// or never existed.
	ErrNoSuchUpload = errors.New("store: no such multipart upload")
	// ErrBadDigest is returned when the Content-MD5 sent does not match the
	// body the server received. The body may be re-sent.
	ErrBadDigest = errors.New("store: Content-MD5 mismatch (BadDigest)")
	// ErrEntityTooSmall is returned by CompleteMultipart when a part other
	// than the last is smaller than MinPartSize.
	ErrEntityTooSmall = errors.New("store: part smaller than the 5 MiB minimum (EntityTooSmall)")
	// ErrInvalidPart is returned by CompleteMultipart when a listed part was
	// never uploaded, its ETag does not match, or the list is not ascending;
	// and by UploadPart for a part number outside 1..MaxParts.
	ErrInvalidPart = errors.New("store: invalid part")
	// ErrTooLarge is returned for a body or range above S3's size limits.
	ErrTooLarge = errors.New("store: entity too large")
	// ErrAccessDenied is returned for rejected credentials or permissions.
	ErrAccessDenied = errors.New("store: access denied")
	// ErrKeyTooLong is returned for a key the server cannot store: longer
	// than 1,024 bytes (S3's KeyTooLongError), or with a segment longer
	// than a server's own limit (MinIO keeps keys as file paths and answers
	// XMinioInvalidObjectName for segments near 255 bytes).
	ErrKeyTooLong = errors.New("store: key too long")
	// ErrTransient marks failures worth retrying with the same bytes: 5xx,
	// SlowDown, throttling, connection resets and timeouts. Implementations
	// wrap the underlying error so that errors.Is(err, ErrTransient) holds.
	ErrTransient = errors.New("store: transient failure")
	// ErrNotImplemented is returned when the server does not implement
	// what the request asked for (501 NotImplemented), such as a
	// conditional write or delete on a server without them. Retrying
	// cannot help.
	ErrNotImplemented = errors.New("store: not implemented by the server")
)

type notExist struct{}

func (notExist) Error() string        { return "store: object does not exist" }
func (notExist) Is(target error) bool { return target == fs.ErrNotExist }

// Metadata is user metadata (x-amz-meta-*), keys lower-case without the prefix.
type Metadata map[string]string

// Object describes one stored object.
type Object struct {
	Key          string
	Size         int64
	ETag         string // without quotes
	LastModified time.Time
	// Metadata is filled by Stat; List leaves it nil (S3 listings carry none).
	Metadata Metadata
}

// ListPage is one page of a delimited listing.
type ListPage struct {
	Objects []Object
	// Prefixes are the common prefixes, full keys ending in the delimiter.
	Prefixes []string
	// Next is the continuation token for the next page; empty on the last page.
	Next string
}

// Part is one completed part of a multipart upload.
type Part struct {
	Number int32
	ETag   string // without quotes
	Size   int64
}

// Upload describes a multipart upload that is neither completed nor aborted.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// PutOptions are attributes given when an object or upload is created.
type PutOptions struct {
	Metadata    Metadata
	ContentType string
	// Cond is what the write requires of the object it replaces. Put sends
	// it with the object; CreateMultipart sends it too, for servers that
	// check it early (MinIO does, S3 ignores it there), but what counts is
	// the condition given to CompleteMultipart, checked against the object
	// current when the upload completes.
	Cond Condition
}

// Condition is what a write requires of the object it replaces.
//
// A write whose condition does not hold fails with ErrPrecondition and
// leaves the object as it was. IfMatch with no object under the key fails
// that way too (S3 answers 404 NoSuchKey there; implementations report it
// as ErrPrecondition, since the object the caller based the write on is
// gone). Setting both fields asks for what cannot hold. A server without
// conditional writes either ignores the condition, so the write succeeds
// whatever is stored, or refuses it with ErrNotImplemented;
// ProbeConditional tells which.
type Condition struct {
	IfMatch     string // the write succeeds only if the object's ETag is this ("" none)
	IfNoneMatch bool   // the write succeeds only if no object exists under the key
}

// IsZero reports whether c asks nothing: the write replaces whatever is there.
func (c Condition) IsZero() bool { return c.IfMatch == "" && !c.IfNoneMatch }

// String describes c for error messages, as the headers that carry it.
func (c Condition) String() string {
	switch {
	case c.IsZero():
		return "no condition"
	case c.IfMatch != "" && c.IfNoneMatch:
		return "If-Match " + c.IfMatch + " and If-None-Match *"
	case c.IfMatch != "":
		return "If-Match " + c.IfMatch
	}
	return "If-None-Match *"
}

// Store is the narrow view of an S3 bucket that partfs uses. All keys are
// full keys within the bucket. Implementations must be safe for concurrent use.
type Store interface {
	// Stat returns an object's size, ETag, modification time and metadata.
	// A missing key is ErrNotExist.
	Stat(ctx context.Context, key string) (Object, error)
	// Get returns length bytes from offset off (length < 0: to the end).
	// With a non-empty etag the read is pinned to that version: if the
	// object changed, ErrPrecondition. The caller closes the reader.
	Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error)
	// List returns one page of keys under prefix. With delimiter "/" keys
	// deeper than one level are folded into Prefixes. token is "" for the
	// first page and ListPage.Next after that; max <= 0 means the server's
	// default page size.
	List(ctx context.Context, prefix, delimiter, token string, max int) (ListPage, error)
	// Put stores body as key in one request carrying Content-MD5 = md5,
	// if opts.Cond holds (ErrPrecondition otherwise).
	Put(ctx context.Context, key string, body []byte, md5 [md5.Size]byte, opts PutOptions) (Object, error)
	// Copy copies src to dst server-side; with a non-empty srcETag the copy
	// fails with ErrPrecondition if src changed. A nil opts keeps src's
	// metadata; a non-nil opts replaces it. Sources above MaxPartSize need
	// a multipart copy instead. The returned Object's Size may be -1 after
	// a pinned copy: the caller knows the size of the version it pinned.
	Copy(ctx context.Context, src, dst, srcETag string, opts *PutOptions) (Object, error)
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// DeleteIfMatch removes key only if its ETag is etag (non-empty):
	// ErrPrecondition if another version is there; nil if the key is
	// missing. A server that refuses the condition answers
	// ErrNotImplemented; one that ignores it deletes whatever version is
	// there.
	DeleteIfMatch(ctx context.Context, key, etag string) error

	// CreateMultipart starts a multipart upload for key and returns its ID.
	// A server may check opts.Cond already (ErrPrecondition); the check
	// that counts is CompleteMultipart's.
	CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error)
	// UploadPart sends part number n (1..MaxParts) with Content-MD5 = md5 and
	// returns the part's ETag. Re-sending n replaces the earlier part.
	UploadPart(ctx context.Context, key, uploadID string, n int32, body []byte, md5 [md5.Size]byte) (Part, error)
	// UploadPartCopy makes part n from length bytes of src at off, pinned to
	// srcETag when it is non-empty (ErrPrecondition if src changed).
	UploadPartCopy(ctx context.Context, key, uploadID string, n int32, src, srcETag string, off, length int64) (Part, error)
	// CompleteMultipart assembles the listed parts, in ascending order, into
	// the object, if cond holds for the object current at that moment.
	// Afterwards the upload ID answers ErrNoSuchUpload. When cond does not
	// hold (ErrPrecondition) the caller aborts the upload; a server may
	// have discarded it already, and the abort answers ErrNoSuchUpload.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part, cond Condition) (Object, error)
	// AbortMultipart discards an upload and its parts. Aborting an unknown
	// upload is ErrNoSuchUpload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// ListMultipart lists the uploads in progress under prefix.
	ListMultipart(ctx context.Context, prefix string) ([]Upload, error)
}

// Sum returns the MD5 of body, the value every Put and UploadPart carries.
func Sum(body []byte) [md5.Size]byte { return md5.Sum(body) }

// IsTransient reports whether err is worth retrying with the same request.
func IsTransient(err error) bool {
	return errors.Is(err, ErrTransient) || errors.Is(err, ErrBadDigest)
}
