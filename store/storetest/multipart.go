package storetest

import (
	"bytes"
	"slices"

	"github.com/partfs/partfs/store"
)

const mib = 1 << 20

func (e *env) create(key string, meta store.Metadata) string {
	e.Helper()
	id, err := e.st.CreateMultipart(e.ctx, key, store.PutOptions{Metadata: meta})
	if err != nil {
		e.Fatalf("CreateMultipart %s: %v", key, err)
	}
	if id == "" {
		e.Fatalf("CreateMultipart %s returned an empty upload ID", key)
	}
	return id
}

// part uploads body as part n and checks the part S3 returns.
func (e *env) part(key, id string, n int32, body []byte) store.Part {
	e.Helper()
	p, err := e.st.UploadPart(e.ctx, key, id, n, body, store.Sum(body))
	if err != nil {
		e.Fatalf("UploadPart %d of %s: %v", n, key, err)
	}
	if p.Number != n || p.ETag != md5hex(body) || p.Size != int64(len(body)) {
		e.Fatalf("UploadPart %d returned %+v, want ETag %s and size %d", n, p, md5hex(body), len(body))
	}
	return p
}

func (e *env) complete(key, id string, parts []store.Part) store.Object {
	e.Helper()
	obj, err := e.st.CompleteMultipart(e.ctx, key, id, parts, store.Condition{})
	if err != nil {
		e.Fatalf("CompleteMultipart %s: %v", key, err)
	}
	var size int64
	for _, p := range parts {
		size += p.Size
	}
	if want := multipartETag(e, parts); obj.ETag != want || obj.Size != size {
		e.Fatalf("CompleteMultipart returned %+v, want ETag %s and size %d", obj, want, size)
	}
	return obj
}

func (e *env) listsUpload(prefix, id string) bool {
	e.Helper()
	ups, err := e.st.ListMultipart(e.ctx, prefix)
	if err != nil {
		e.Fatalf("ListMultipart %s: %v", prefix, err)
	}
	return slices.ContainsFunc(ups, func(u store.Upload) bool { return u.UploadID == id })
}

func testMultipart(e *env) {
	k := e.key("obj")
	id := e.create(k, fileMeta)
	if !e.listsUpload(e.prefix, id) {
		e.Fatalf("ListMultipart does not show the open upload")
	}
	b1, b2 := payload(5*mib, 1), payload(1234, 2)
	parts := []store.Part{e.part(k, id, 1, b1), e.part(k, id, 2, b2)}
	obj := e.complete(k, id, parts)
	if !multipartETagForm.MatchString(obj.ETag) {
		e.Fatalf("multipart ETag %q lacks S3's form", obj.ETag)
	}

	got := e.stat(k)
	if got.ETag != obj.ETag || got.Size != int64(len(b1)+len(b2)) {
		e.Fatalf("Stat %+v; CompleteMultipart returned %+v", got, obj)
	}
	sameMetadata(e, "Stat of a completed upload", got.Metadata, fileMeta)
	whole := append(bytes.Clone(b1), b2...)
	sameBytes(e, "Get of a completed upload", e.mustGet(k, 0, -1, obj.ETag), whole)
	sameBytes(e, "Get across the part boundary", e.mustGet(k, 5*mib-10, 20, obj.ETag), whole[5*mib-10:5*mib+10])

	if e.listsUpload(e.prefix, id) {
		e.Fatalf("ListMultipart shows a completed upload")
	}
	_, err := e.st.UploadPart(e.ctx, k, id, 3, b2, store.Sum(b2))
	e.wantErr("UploadPart after CompleteMultipart", err, store.ErrNoSuchUpload)
}

func testMultipartSinglePart(e *env) {
	// The only part is also the last, so it may be small.
	k := e.key("obj")
	id := e.create(k, nil)
	body := payload(10, 1)
	e.complete(k, id, []store.Part{e.part(k, id, 1, body)})
	sameBytes(e, "Get", e.mustGet(k, 0, -1, ""), body)
}

func testMultipartOverwritePart(e *env) {
	k := e.key("obj")
	id := e.create(k, nil)
	first, second, tail := payload(5*mib, 1), payload(5*mib, 2), payload(100, 3)
	old := e.part(k, id, 1, first)
	replaced := e.part(k, id, 1, second)
	last := e.part(k, id, 2, tail)
	_, err := e.st.CompleteMultipart(e.ctx, k, id, []store.Part{old, last}, store.Condition{})
	e.wantErr("CompleteMultipart naming a replaced part's ETag", err, store.ErrInvalidPart)
	e.complete(k, id, []store.Part{replaced, last})
	sameBytes(e, "Get after re-sending part 1", e.mustGet(k, 0, -1, ""), append(bytes.Clone(second), tail...))
}

func testMultipartBadDigest(e *env) {
	k := e.key("obj")
	id := e.create(k, nil)
	body := payload(1000, 1)
	_, err := e.st.UploadPart(e.ctx, k, id, 1, body, store.Sum(payload(1000, 2)))
	e.wantErr("UploadPart with a wrong Content-MD5", err, store.ErrBadDigest)
	// The same bytes with the right digest go through.
	e.complete(k, id, []store.Part{e.part(k, id, 1, body)})
}

func testMultipartEntityTooSmall(e *env) {
	k := e.key("obj")
	id := e.create(k, nil)
	parts := []store.Part{e.part(k, id, 1, payload(1024, 1)), e.part(k, id, 2, payload(1024, 2))}
	_, err := e.st.CompleteMultipart(e.ctx, k, id, parts, store.Condition{})
	e.wantErr("CompleteMultipart with a small first part", err, store.ErrEntityTooSmall)
	_, err = e.st.Stat(e.ctx, k)
	e.wantErr("Stat after a rejected complete", err, store.ErrNotExist)
}

func testMultipartInvalidPart(e *env) {
	k := e.key("obj")
	id := e.create(k, nil)
	small := payload(10, 1)
	for _, n := range []int32{0, -1, store.MaxParts + 1} {
		_, err := e.st.UploadPart(e.ctx, k, id, n, small, store.Sum(small))
		e.wantErr("UploadPart with an out-of-range part number", err, store.ErrInvalidPart)
	}
	p1, p2 := e.part(k, id, 1, payload(5*mib, 2)), e.part(k, id, 2, payload(5*mib, 3))
	wrongETag := p2
	wrongETag.ETag = md5hex(small)
	for _, c := range []struct {
		what  string
		parts []store.Part
	}{
		{"a part never uploaded", []store.Part{p1, {Number: 3, ETag: p2.ETag}}},
		{"a wrong ETag", []store.Part{p1, wrongETag}},
		{"parts out of order", []store.Part{p2, p1}},
	} {
		_, err := e.st.CompleteMultipart(e.ctx, k, id, c.parts, store.Condition{})
		e.wantErr("CompleteMultipart with "+c.what, err, store.ErrInvalidPart)
	}
	e.complete(k, id, []store.Part{p1, p2})
}

func testMultipartAbort(e *env) {
	k := e.key("obj")
	id := e.create(k, nil)
	body := payload(100, 1)
	p := e.part(k, id, 1, body)
	if err := e.st.AbortMultipart(e.ctx, k, id); err != nil {
		e.Fatalf("AbortMultipart: %v", err)
	}
	_, err := e.st.UploadPart(e.ctx, k, id, 2, body, store.Sum(body))
	e.wantErr("UploadPart after abort", err, store.ErrNoSuchUpload)
	_, err = e.st.CompleteMultipart(e.ctx, k, id, []store.Part{p}, store.Condition{})
	e.wantErr("CompleteMultipart after abort", err, store.ErrNoSuchUpload)
	e.wantErr("second AbortMultipart", e.st.AbortMultipart(e.ctx, k, id), store.ErrNoSuchUpload)
	if e.listsUpload(e.prefix, id) {
		e.Fatalf("ListMultipart shows an aborted upload")
	}
	_, err = e.st.Stat(e.ctx, k)
	e.wantErr("Stat after abort", err, store.ErrNotExist)
}

func testUploadPartCopy(e *env) {
	src := e.key("src")
	body := payload(6*mib, 4)
	obj := e.put(src, body, nil)
	k := e.key("obj")
	id := e.create(k, nil)
	copyPart := func(n int32, srcETag string, off, length int64) (store.Part, error) {
		return e.st.UploadPartCopy(e.ctx, k, id, n, src, srcETag, off, length)
	}

	_, err := copyPart(1, md5hex(nil), 0, 5*mib)
	e.wantErr("UploadPartCopy pinned to a stale ETag", err, store.ErrPrecondition)
	_, err = e.st.UploadPartCopy(e.ctx, k, id, 1, e.key("missing"), "", 0, 10)
	e.wantErr("UploadPartCopy from a missing key", err, store.ErrNotExist)

	// A range ending at the source's end, then a part sent from memory, as
	// when appending to an existing object.
	const off = mib
	p, err := copyPart(1, obj.ETag, off, 5*mib)
	if err != nil {
		e.Fatalf("UploadPartCopy: %v", err)
	}
	if want := body[off:]; p.Number != 1 || p.ETag != md5hex(want) || p.Size != 5*mib {
		e.Fatalf("UploadPartCopy returned %+v, want ETag %s and size %d", p, md5hex(want), 5*mib)
	}
	tail := payload(100, 5)
	done := e.complete(k, id, []store.Part{p, e.part(k, id, 2, tail)})
	sameBytes(e, "Get of an object built by UploadPartCopy", e.mustGet(k, 0, -1, done.ETag), append(bytes.Clone(body[off:]), tail...))
}

func testListMultipart(e *env) {
	open := e.create(e.key("x/open"), nil)
	outside := e.create(e.key("y/open"), nil)
	done := e.create(e.key("x/done"), nil)
	e.complete(e.key("x/done"), done, []store.Part{e.part(e.key("x/done"), done, 1, payload(10, 1))})

	ups, err := e.st.ListMultipart(e.ctx, e.key("x/"))
	if err != nil {
		e.Fatalf("ListMultipart: %v", err)
	}
	if len(ups) != 1 || ups[0].UploadID != open || ups[0].Key != e.key("x/open") || ups[0].Initiated.IsZero() {
		e.Fatalf("ListMultipart(%q) = %+v, want only the open upload %s", e.key("x/"), ups, open)
	}
	if !e.listsUpload(e.prefix, outside) {
		e.Fatalf("ListMultipart(%q) misses %s", e.prefix, outside)
	}
}
