package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/partfs/partfs/store"
)

// CreateMultipart implements store.Store. opts.Cond goes out as headers,
// which MinIO checks at once and S3 leaves to CompleteMultipart.
func (s *Store) CreateMultipart(ctx context.Context, key string, opts store.PutOptions) (string, error) {
	in := &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key, Metadata: opts.Metadata}
	if opts.ContentType != "" {
		in.ContentType = &opts.ContentType
	}
	in.ServerSideEncryption, in.SSEKMSKeyId = s.sse.server()
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	var optFns []func(*s3.Options)
	if !opts.Cond.IsZero() {
		optFns = append(optFns, withCondition(opts.Cond))
	}
	w := s.watch(ctx, false)
	out, err := s.client.CreateMultipartUpload(w.ctx, in, optFns...)
	w.end()
	if err != nil {
		return "", s.writeFailed(w, "create multipart upload", key, opts.Cond, err)
	}
	return aws.ToString(out.UploadId), nil
}

// checkPart rejects what S3 would reject, before any byte is sent.
func checkPart(op, key string, n int32, size int64) error {
	if n < 1 || n > store.MaxParts {
		return fmt.Errorf("s3 %s %d of %q: part number outside 1..%d: %w", op, n, key, store.MaxParts, store.ErrInvalidPart)
	}
	if size > store.MaxPartSize {
		return fmt.Errorf("s3 %s %d of %q: %d bytes: %w", op, n, key, size, store.ErrTooLarge)
	}
	return nil
}

// UploadPart implements store.Store.
func (s *Store) UploadPart(ctx context.Context, key, uploadID string, n int32, data []byte, sum [md5.Size]byte) (store.Part, error) {
	if err := checkPart("upload part", key, n, int64(len(data))); err != nil {
		return store.Part{}, err
	}
	w := s.watch(ctx, false)
	defer w.end()
	in := &s3.UploadPartInput{
		Bucket:        &s.bucket,
		Key:           &key,
		UploadId:      &uploadID,
		PartNumber:    aws.Int32(n),
		Body:          s.sendBody(w, data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	}
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	out, err := s.client.UploadPart(w.ctx, in, s.bodyOpts...)
	if err != nil {
		return store.Part{}, s.failed(w, "upload part "+strconv.Itoa(int(n))+" of", key, err)
	}
	return store.Part{Number: n, ETag: unquote(aws.ToString(out.ETag)), Size: int64(len(data))}, nil
}

// UploadPartCopy implements store.Store.
func (s *Store) UploadPartCopy(ctx context.Context, key, uploadID string, n int32, src, srcETag string, off, length int64) (store.Part, error) {
	if err := checkPart("copy part", key, n, length); err != nil {
		return store.Part{}, err
	}
	if off < 0 || length <= 0 {
		return store.Part{}, fmt.Errorf("s3 copy part %d of %q from %q: invalid range %d+%d", n, key, src, off, length)
	}
	in := &s3.UploadPartCopyInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        &uploadID,
		PartNumber:      aws.Int32(n),
		CopySource:      aws.String(copySource(s.bucket, src)),
		CopySourceRange: aws.String(partRange(off, length)),
	}
	if srcETag != "" {
		in.CopySourceIfMatch = aws.String(quote(srcETag))
	}
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	in.CopySourceSSECustomerAlgorithm, in.CopySourceSSECustomerKey, in.CopySourceSSECustomerKeyMD5 = s.sse.customer()
	w := s.watch(ctx, true)
	out, err := s.client.UploadPartCopy(w.ctx, in)
	w.end()
	if err != nil {
		return store.Part{}, s.failed(w, "copy part "+strconv.Itoa(int(n))+" from "+strconv.Quote(src)+" to", key, err)
	}
	p := store.Part{Number: n, Size: length}
	if r := out.CopyPartResult; r != nil {
		p.ETag = unquote(aws.ToString(r.ETag))
	}
	return p, nil
}

// CompleteMultipart implements store.Store. The answer carries no size, so
// it is the sum of the parts' sizes when every part has one, and otherwise
// read back with a HEAD pinned to the new ETag.
func (s *Store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []store.Part, cond store.Condition) (store.Object, error) {
	if len(parts) == 0 {
		return store.Object{}, fmt.Errorf("s3 complete %q: empty part list: %w", key, store.ErrInvalidPart)
	}
	completed := make([]types.CompletedPart, len(parts))
	var size int64
	sized := true
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(quote(p.ETag))}
		size += p.Size
		sized = sized && p.Size > 0
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}
	in.IfMatch, in.IfNoneMatch = conditionHeaders(cond)
	in.SSECustomerAlgorithm, in.SSECustomerKey, in.SSECustomerKeyMD5 = s.sse.customer()
	w := s.watch(ctx, true)
	out, err := s.client.CompleteMultipartUpload(w.ctx, in)
	w.end()
	if err != nil {
		return store.Object{}, s.writeFailed(w, "complete", key, cond, err)
	}
	obj := store.Object{Key: key, Size: size, ETag: unquote(aws.ToString(out.ETag)), LastModified: serverTime(out.ResultMetadata)}
	if !sized {
		return s.head(ctx, "stat completed", key, obj.ETag)
	}
	return obj, nil
}

// AbortMultipart implements store.Store. It first asks for one part of the
// upload, because MinIO answers success to aborting an upload that was
// already aborted or completed where S3 answers NoSuchUpload.
func (s *Store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	w := s.watch(ctx, false)
	_, err := s.client.ListParts(w.ctx, &s3.ListPartsInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID, MaxParts: aws.Int32(1)})
	w.end()
	if err != nil {
		return s.failed(w, "abort", key, err)
	}
	w = s.watch(ctx, false)
	_, err = s.client.AbortMultipartUpload(w.ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
	w.end()
	return s.failed(w, "abort", key, err)
}

// ListMultipart implements store.Store, following every page. It lists the
// whole bucket's uploads and keeps those under prefix, because MinIO
// matches a non-empty prefix only against whole keys; uploads in progress
// are few, so the cost is small.
func (s *Store) ListMultipart(ctx context.Context, prefix string) ([]store.Upload, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket}
	var ups []store.Upload
	for {
		w := s.watch(ctx, false)
		out, err := s.client.ListMultipartUploads(w.ctx, in)
		w.end()
		if err != nil {
			return nil, s.failed(w, "list uploads", prefix, err)
		}
		for _, u := range out.Uploads {
			if key := aws.ToString(u.Key); strings.HasPrefix(key, prefix) {
				ups = append(ups, store.Upload{
					Key:       key,
					UploadID:  aws.ToString(u.UploadId),
					Initiated: aws.ToTime(u.Initiated),
				})
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return ups, nil
		}
		if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			return ups, fmt.Errorf("s3 list uploads %q: truncated listing without a marker", prefix)
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
