package memstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/partfs/partfs/store"
)

// upload is one multipart upload in progress.
type upload struct {
	store.Upload
	opts  store.PutOptions
	parts map[int32]part
}

type part struct {
	data []byte
	sum  [md5.Size]byte
	etag string
}

// CreateMultipart implements store.Store.
func (s *Store) CreateMultipart(ctx context.Context, key string, opts store.PutOptions) (id string, err error) {
	op := Op{Name: "CreateMultipart", Key: key, Cond: opts.Cond}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return "", err
	}
	if err = s.refuse("create multipart upload of", key, opts.Cond); err != nil {
		return "", err
	}
	// Random bytes keep IDs from being guessable across stores, as S3's are.
	var r [8]byte
	_, _ = rand.Read(r[:])
	s.mu.Lock()
	// MinIO checks the condition here already; S3 only at completion.
	if err = s.conditionLocked(key, opts.Cond); err != nil {
		s.mu.Unlock()
		return "", fmt.Errorf("create multipart upload of %q: %w", key, err)
	}
	s.nextUpload++
	id = fmt.Sprintf("%d-%s", s.nextUpload, hex.EncodeToString(r[:]))
	s.uploads[id] = &upload{
		Upload: store.Upload{Key: key, UploadID: id, Initiated: s.now()},
		opts:   store.PutOptions{Metadata: copyMetadata(opts.Metadata), ContentType: opts.ContentType},
		parts:  make(map[int32]part),
	}
	s.mu.Unlock()
	op.UploadID = id
	return id, s.after(op)
}

// uploadLocked finds the upload id of key.
func (s *Store) uploadLocked(key, id string) (*upload, error) {
	u, ok := s.uploads[id]
	if !ok || u.Key != key {
		return nil, fmt.Errorf("upload %s of %q: %w", id, key, store.ErrNoSuchUpload)
	}
	return u, nil
}

func checkPartNumber(key string, n int32) error {
	if n < 1 || n > store.MaxParts {
		return fmt.Errorf("part number %d of %q outside 1..%d: %w", n, key, store.MaxParts, store.ErrInvalidPart)
	}
	return nil
}

// UploadPart implements store.Store.
func (s *Store) UploadPart(ctx context.Context, key, uploadID string, n int32, body []byte, sum [md5.Size]byte) (p store.Part, err error) {
	op := Op{Name: "UploadPart", Key: key, UploadID: uploadID, Part: n}
	defer s.record(op, len(body), sum, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Part{}, err
	}
	if err = checkPartNumber(key, n); err != nil {
		return store.Part{}, err
	}
	if int64(len(body)) > s.opts.MaxPartSize {
		return store.Part{}, fmt.Errorf("part %d of %q, %d bytes: %w", n, key, len(body), store.ErrTooLarge)
	}
	if md5.Sum(body) != sum {
		return store.Part{}, fmt.Errorf("part %d of %q: %w", n, key, store.ErrBadDigest)
	}
	pt := part{data: bytes.Clone(body), sum: sum, etag: hex.EncodeToString(sum[:])}
	if err = s.putPart(key, uploadID, n, pt); err != nil {
		return store.Part{}, err
	}
	return store.Part{Number: n, ETag: pt.etag, Size: int64(len(body))}, s.after(op)
}

func (s *Store) putPart(key, uploadID string, n int32, pt part) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.uploadLocked(key, uploadID)
	if err != nil {
		return fmt.Errorf("part %d: %w", n, err)
	}
	u.parts[n] = pt
	return nil
}

// UploadPartCopy implements store.Store. A negative length copies from off to
// the end of src, like a copy without a range.
func (s *Store) UploadPartCopy(ctx context.Context, key, uploadID string, n int32, src, srcETag string, off, length int64) (p store.Part, err error) {
	op := Op{Name: "UploadPartCopy", Key: key, UploadID: uploadID, Part: n, Src: src, Off: off, Length: length}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Part{}, err
	}
	if err = checkPartNumber(key, n); err != nil {
		return store.Part{}, err
	}
	s.mu.Lock()
	data, err := s.copyRangeLocked(src, srcETag, off, length)
	s.mu.Unlock()
	if err != nil {
		return store.Part{}, fmt.Errorf("part %d of %q: %w", n, key, err)
	}
	pt := part{data: data, sum: md5.Sum(data)}
	pt.etag = hex.EncodeToString(pt.sum[:])
	if err = s.putPart(key, uploadID, n, pt); err != nil {
		return store.Part{}, err
	}
	return store.Part{Number: n, ETag: pt.etag, Size: int64(len(data))}, s.after(op)
}

// copyRangeLocked returns the bytes of src an UploadPartCopy takes. They are
// a slice of immutable object data, so nothing is copied.
func (s *Store) copyRangeLocked(src, srcETag string, off, length int64) ([]byte, error) {
	o, err := s.sourceLocked("upload part copy", src, srcETag)
	if err != nil {
		return nil, err
	}
	size := int64(len(o.data))
	if length < 0 {
		length = size - off
	}
	if length > s.opts.MaxPartSize {
		return nil, fmt.Errorf("copy range of %d bytes from %q: %w", length, src, store.ErrTooLarge)
	}
	if off < 0 || off > size || length > size-off || (length == 0 && size > 0) {
		return nil, fmt.Errorf("copy range %d+%d of %d-byte %q: invalid range", off, length, size, src)
	}
	return o.data[off : off+length], nil
}

// CompleteMultipart implements store.Store.
func (s *Store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []store.Part, cond store.Condition) (obj store.Object, err error) {
	op := Op{Name: "CompleteMultipart", Key: key, UploadID: uploadID, Cond: cond}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return store.Object{}, err
	}
	if err = s.refuse("complete", key, cond); err != nil {
		return store.Object{}, err
	}
	s.mu.Lock()
	o, err := s.completeLocked(key, uploadID, parts, cond)
	s.mu.Unlock()
	if err != nil {
		return store.Object{}, fmt.Errorf("complete %q: %w", key, err)
	}
	return o.info(key), s.after(op)
}

func (s *Store) completeLocked(key, uploadID string, parts []store.Part, cond store.Condition) (*object, error) {
	u, err := s.uploadLocked(key, uploadID)
	if err != nil {
		return nil, err
	}
	if err := s.conditionLocked(key, cond); err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("empty part list: %w", store.ErrInvalidPart)
	}
	chosen := make([]part, len(parts))
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return nil, fmt.Errorf("part %d listed after part %d: %w", p.Number, parts[i-1].Number, store.ErrInvalidPart)
		}
		pt, ok := u.parts[p.Number]
		if !ok {
			return nil, fmt.Errorf("part %d was not uploaded: %w", p.Number, store.ErrInvalidPart)
		}
		if trimQuotes(p.ETag) != pt.etag {
			return nil, fmt.Errorf("part %d has ETag %s, not %s: %w", p.Number, pt.etag, p.ETag, store.ErrInvalidPart)
		}
		chosen[i] = pt
	}
	var total int64
	sums := make([]byte, 0, md5.Size*len(chosen))
	for i, pt := range chosen {
		if i < len(chosen)-1 && int64(len(pt.data)) < s.opts.MinPartSize {
			return nil, fmt.Errorf("part %d has %d bytes: %w", parts[i].Number, len(pt.data), store.ErrEntityTooSmall)
		}
		total += int64(len(pt.data))
		sums = append(sums, pt.sum[:]...)
	}
	if total > store.MaxObjectSize {
		return nil, fmt.Errorf("%d bytes: %w", total, store.ErrTooLarge)
	}
	data := make([]byte, 0, total)
	for _, pt := range chosen {
		data = append(data, pt.data...)
	}
	etag := md5.Sum(sums)
	o := &object{
		data:        data,
		etag:        fmt.Sprintf("%s-%d", hex.EncodeToString(etag[:]), len(chosen)),
		modified:    s.now(),
		meta:        u.opts.Metadata,
		contentType: u.opts.ContentType,
	}
	s.objects[key] = o
	delete(s.uploads, uploadID)
	return o, nil
}

// AbortMultipart implements store.Store.
func (s *Store) AbortMultipart(ctx context.Context, key, uploadID string) (err error) {
	op := Op{Name: "AbortMultipart", Key: key, UploadID: uploadID}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return err
	}
	s.mu.Lock()
	_, err = s.uploadLocked(key, uploadID)
	if err == nil {
		delete(s.uploads, uploadID)
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	return s.after(op)
}

// ListMultipart implements store.Store.
func (s *Store) ListMultipart(ctx context.Context, prefix string) (ups []store.Upload, err error) {
	op := Op{Name: "ListMultipart", Key: prefix}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return nil, err
	}
	ups = s.uploadsWithPrefix(prefix)
	return ups, s.after(op)
}

// Uploads returns the multipart uploads in progress, by key and start time.
func (s *Store) Uploads() []store.Upload { return s.uploadsWithPrefix("") }

// Parts returns the parts uploaded so far to an upload in progress, by number.
func (s *Store) Parts(uploadID string) []store.Part {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[uploadID]
	if !ok {
		return nil
	}
	var out []store.Part
	for n, pt := range u.parts {
		out = append(out, store.Part{Number: n, ETag: pt.etag, Size: int64(len(pt.data))})
	}
	slices.SortFunc(out, func(a, b store.Part) int { return cmp.Compare(a.Number, b.Number) })
	return out
}

func (s *Store) uploadsWithPrefix(prefix string) []store.Upload {
	s.mu.Lock()
	var ups []store.Upload
	for _, u := range s.uploads {
		if len(u.Key) >= len(prefix) && u.Key[:len(prefix)] == prefix {
			ups = append(ups, u.Upload)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ups, func(a, b store.Upload) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), a.Initiated.Compare(b.Initiated), cmp.Compare(a.UploadID, b.UploadID))
	})
	return ups
}
