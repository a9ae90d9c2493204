package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/partfs/partfs/store"
)

// unsignedPayload replaces the SHA-256 payload hash with UNSIGNED-PAYLOAD.
func unsignedPayload(stack *middleware.Stack) error {
	return v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware(stack)
}

// Stat implements store.Store.
func (s *Store) Stat(ctx context.Context, key string) (store.Object, error) {
	return s.head(ctx, "stat", key, "")
}

// head is HeadObject, pinned to etag when it is non-empty.
func (s *Store) head(ctx context.Context, op, key, etag string) (store.Object, error) {
	in := &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key}
	if etag != "" {
		in.IfMatch = aws.String(quote(etag))
	}
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	w := s.watch(ctx, false)
	out, err := s.client.HeadObject(w.ctx, in)
	w.end()
	if err != nil {
		return store.Object{}, s.failed(w, op, key, err)
	}
	return store.Object{
		Key:          key,
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         unquote(aws.ToString(out.ETag)),
		LastModified: aws.ToTime(out.LastModified),
		Metadata:     lowerKeys(out.Metadata),
	}, nil
}

// Get implements store.Store. An offset at or past the end of the object
// gives an empty body, as in store/memstore: S3 answers 416 there.
func (s *Store) Get(ctx context.Context, key string, off, length int64, etag string) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("s3 get %q at %d: negative offset", key, off)
	}
	if length == 0 {
		// No byte range can be empty; a HEAD still reports a missing
		// key or a changed ETag.
		if _, err := s.head(ctx, "get", key, etag); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if etag != "" {
		in.IfMatch = aws.String(quote(etag))
	}
	if off > 0 || length > 0 {
		in.Range = aws.String(byteRange(off, length))
	}
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	w := s.watch(ctx, false)
	out, err := s.client.GetObject(w.ctx, in)
	if err != nil {
		w.end()
		// A precondition is checked before the range, so a 416 means
		// the (right) object is shorter than off.
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, s.failed(w, "get", key, err)
	}
	w.pause() // until the reader asks for bytes
	return &body{ReadCloser: out.Body, s: s, w: w, key: key, etag: unquote(aws.ToString(out.ETag))}, nil
}

// byteRange is the Range header for length bytes at off (length < 0: to the
// end).
func byteRange(off, length int64) string {
	if length < 0 {
		return fmt.Sprintf("bytes=%d-", off)
	}
	return fmt.Sprintf("bytes=%d-%d", off, off+length-1)
}

// body maps failures while reading a GET body onto the store sentinels, so
// that a connection reset midway reads as store.ErrTransient, and watches
// each Read: one that waits IOTimeout without a byte abandons the
// connection (a stalled body), also as store.ErrTransient.
type body struct {
	io.ReadCloser
	s    *Store
	w    *watch
	key  string
	etag string
}

var _ store.Versioned = (*body)(nil)

func (b *body) ETag() string { return b.etag }

func (b *body) Read(p []byte) (int, error) {
	b.w.arm("waiting for body bytes", b.w.io)
	n, err := b.ReadCloser.Read(p)
	b.w.pause()
	if err != nil && err != io.EOF {
		err = b.s.failed(b.w, "read", b.key, err)
	}
	return n, err
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.w.end()
	return err
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, data []byte, sum [md5.Size]byte, opts store.PutOptions) (store.Object, error) {
	if int64(len(data)) > store.MaxPutSize {
		return store.Object{}, fmt.Errorf("s3 put %q of %d bytes: %w", key, len(data), store.ErrTooLarge)
	}
	w := s.watch(ctx, false)
	defer w.end()
	in := &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &key,
		Body:          s.sendBody(w, data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		Metadata:      opts.Metadata,
	}
	if opts.ContentType != "" {
		in.ContentType = &opts.ContentType
	}
	in.IfMatch, in.IfNoneMatch = conditionHeaders(opts.Cond)
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse.server()
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	out, err := s.client.PutObject(w.ctx, in, s.bodyOpts...)
	if err != nil {
		return store.Object{}, s.writeFailed(w, "put", key, opts.Cond, err)
	}
	return store.Object{
		Key:          key,
		Size:         int64(len(data)),
		ETag:         unquote(aws.ToString(out.ETag)),
		LastModified: serverTime(out.ResultMetadata),
	}, nil
}

// Copy implements store.Store. It first reads the source's size (the copy
// answer lacks it) and then pins the copy to the ETag it saw, so the size
// reported is the size copied.
func (s *Store) Copy(ctx context.Context, src, dst, srcETag string, opts *store.PutOptions) (store.Object, error) {
	// A copy pinned to an ETag needs nothing from a HEAD: the condition is
	// the copy's own, and the caller knows the size. Only an unpinned copy
	// asks first, for the ETag to pin it to and the size to report.
	from := store.Object{ETag: srcETag, Size: -1}
	if srcETag == "" {
		var err error
		if from, err = s.head(ctx, "copy from", src, ""); err != nil {
			return store.Object{}, err
		}
		if from.Size > store.MaxPartSize {
			return store.Object{}, fmt.Errorf("s3 copy %q of %d bytes: %w", src, from.Size, store.ErrTooLarge)
		}
	}
	in := &s3.CopyObjectInput{
		Bucket:            &s.bucket,
		Key:               &dst,
		CopySource:        aws.String(copySource(s.bucket, src)),
		CopySourceIfMatch: aws.String(quote(from.ETag)),
	}
	if opts != nil {
		in.MetadataDirective = types.MetadataDirectiveReplace
		in.Metadata = opts.Metadata
		if opts.ContentType != "" {
			in.ContentType = &opts.ContentType
		}
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse.server()
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	in.CopySourceSSECustomerAlgorithm, in.CopySourceSSECustomerKey, in.CopySourceSSECustomerKeyMD5 = s.sse.customer()
	w := s.watch(ctx, true)
	out, err := s.client.CopyObject(w.ctx, in)
	w.end()
	if err != nil {
		return store.Object{}, s.failed(w, "copy", src+" to "+dst, err)
	}
	obj := store.Object{Key: dst, Size: from.Size, LastModified: serverTime(out.ResultMetadata)}
	if r := out.CopyObjectResult; r != nil {
		obj.ETag = unquote(aws.ToString(r.ETag))
		if r.LastModified != nil {
			obj.LastModified = *r.LastModified
		}
	}
	return obj, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	w := s.watch(ctx, false)
	_, err := s.client.DeleteObject(w.ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	w.end()
	if err == nil {
		return nil
	}
	// S3 answers 204 for a missing key; some servers answer 404.
	if classify(err) == store.ErrNotExist && !isCode(err, "NoSuchBucket") {
		return nil
	}
	return s.wrapErr(ctx, "delete", key, err)
}

// DeleteIfMatch implements store.Store with a DeleteObject carrying
// If-Match. A 412 is checked with a HEAD: a key with no object at all is
// deleted, whatever a server answers for it.
func (s *Store) DeleteIfMatch(ctx context.Context, key, etag string) error {
	if etag == "" {
		return fmt.Errorf("s3 delete %q if it matches: no ETag given", key)
	}
	op := "delete (If-Match " + unquote(etag) + ")"
	w := s.watch(ctx, false)
	_, err := s.client.DeleteObject(w.ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key, IfMatch: aws.String(quote(etag))})
	w.end()
	if err == nil {
		return nil
	}
	switch classify(err) {
	case store.ErrNotExist:
		if !isCode(err, "NoSuchBucket") {
			return nil
		}
	case store.ErrPrecondition:
		if _, herr := s.head(ctx, "stat", key, ""); errors.Is(herr, store.ErrNotExist) && !errors.Is(herr, ErrNoSuchBucket) {
			return nil
		}
	}
	return s.failed(w, op, key, err)
}

// conditionHeaders returns the If-Match and If-None-Match values that carry
// c, nil when absent.
func conditionHeaders(c store.Condition) (ifMatch, ifNoneMatch *string) {
	if c.IfMatch != "" {
		ifMatch = aws.String(quote(c.IfMatch))
	}
	if c.IfNoneMatch {
		ifNoneMatch = aws.String("*")
	}
	return ifMatch, ifNoneMatch
}

// withCondition adds c's headers to a request whose input has no fields
// for them (CreateMultipartUpload). They are set before signing, so they
// are signed like the rest.
func withCondition(c store.Condition) func(*s3.Options) {
	ifMatch, ifNoneMatch := conditionHeaders(c)
	add := middleware.BuildMiddlewareFunc("partfsCondition", func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok {
			if ifMatch != nil {
				req.Header.Set("If-Match", *ifMatch)
			}
			if ifNoneMatch != nil {
				req.Header.Set("If-None-Match", *ifNoneMatch)
			}
		}
		return next.HandleBuild(ctx, in)
	})
	return s3.WithAPIOptions(func(stack *middleware.Stack) error {
		return stack.Build.Add(add, middleware.After)
	})
}

// writeFailed is failed for a write made under condition c. S3 answers a
// write with If-Match on a key with no object 404 NoSuchKey; the object the
// write was based on is gone, which is ErrPrecondition to the caller.
func (s *Store) writeFailed(w *watch, op, key string, c store.Condition, err error) error {
	if c.IsZero() {
		return s.failed(w, op, key, err)
	}
	op += " (" + c.String() + ")"
	if c.IfMatch != "" && classify(err) == store.ErrNotExist && !isCode(err, "NoSuchBucket") {
		return fmt.Errorf("s3 %s %q: no object there: %w: %w", op, key, store.ErrPrecondition, err)
	}
	return s.failed(w, op, key, err)
}

// copySource is the x-amz-copy-source value for key: the bucket and key,
// percent-encoded except for unreserved characters and '/'. S3 decodes the
// header as a URL, so '+', '%', '?', '#' and spaces in keys must be encoded.
func copySource(bucket, key string) string {
	var b strings.Builder
	b.WriteString(bucket)
	b.WriteByte('/')
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// serverTime is the server's Date for a response, or the local time when it
// sent none: S3 stamps a new object at about that time, and the answer to a
// Put carries no Last-Modified.
func serverTime(md middleware.Metadata) time.Time {
	if t, ok := awsmiddleware.GetServerTime(md); ok && !t.IsZero() {
		return t.UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

func quote(etag string) string   { return `"` + unquote(etag) + `"` }
func unquote(etag string) string { return strings.Trim(etag, `"`) }

// lowerKeys returns m with lower-cased keys, as S3 reports metadata names.
func lowerKeys(m map[string]string) store.Metadata {
	if len(m) == 0 {
		return nil
	}
	out := make(store.Metadata, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// partRange is the x-amz-copy-source-range value for an UploadPartCopy.
func partRange(off, length int64) string {
	return "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+length-1, 10)
}
