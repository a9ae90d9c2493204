package storetest

import (
	"errors"

	"github.com/partfs/partfs/store"
)

var (
	ifNoneMatch = store.Condition{IfNoneMatch: true}
	staleETag   = md5hex([]byte("storetest: a version that is not there"))
)

func ifMatch(etag string) store.Condition { return store.Condition{IfMatch: etag} }

func (e *env) putIf(key string, body []byte, c store.Condition) (store.Object, error) {
	return e.st.Put(e.ctx, key, body, store.Sum(body), store.PutOptions{Cond: c})
}

// holds fails unless key holds exactly body.
func (e *env) holds(what, key string, body []byte) {
	e.Helper()
	sameBytes(e, what, e.mustGet(key, 0, -1, ""), body)
}

func testPutIfNoneMatch(e *env) {
	k := e.key("obj")
	v1, v2 := payload(100, 1), payload(100, 2)
	obj, err := e.putIf(k, v1, ifNoneMatch)
	if err != nil || obj.ETag != md5hex(v1) {
		e.Fatalf("Put If-None-Match on a fresh key: %+v, %v", obj, err)
	}
	_, err = e.putIf(k, v2, ifNoneMatch)
	e.wantErr("Put If-None-Match on an existing key", err, store.ErrPrecondition)
	e.holds("object after a refused Put", k, v1)
}

func testPutIfMatch(e *env) {
	k := e.key("obj")
	v1, v2, v3 := payload(100, 1), payload(100, 2), payload(100, 3)
	old := e.put(k, v1, nil)
	_, err := e.putIf(k, v2, ifMatch(staleETag))
	e.wantErr("Put If-Match a wrong ETag", err, store.ErrPrecondition)
	e.holds("object after a refused Put", k, v1)

	obj, err := e.putIf(k, v2, ifMatch(old.ETag))
	if err != nil || obj.ETag != md5hex(v2) {
		e.Fatalf("Put If-Match the current ETag: %+v, %v", obj, err)
	}
	e.holds("object after Put If-Match", k, v2)
	_, err = e.putIf(k, v3, ifMatch(old.ETag))
	e.wantErr("Put If-Match a replaced ETag", err, store.ErrPrecondition)
	e.holds("object after a refused Put", k, v2)

	// S3 answers 404 NoSuchKey here; to the caller the object its write
	// was based on is gone, a failed condition.
	missing := e.key("missing")
	_, err = e.putIf(missing, v3, ifMatch(old.ETag))
	e.wantErr("Put If-Match on a key with no object", err, store.ErrPrecondition)
	if errors.Is(err, store.ErrNotExist) {
		e.Fatalf("Put If-Match on a key with no object: %v; a failed condition is not a missing file", err)
	}
	_, err = e.st.Stat(e.ctx, missing)
	e.wantErr("Stat after a refused Put", err, store.ErrNotExist)
}

// createIf starts an upload under condition c. A server may check c at
// once (MinIO does) or only at completion (S3): when c cannot hold, both
// are accepted, and "" is returned for an upload refused at once.
func (e *env) createIf(key string, c store.Condition, canHold bool) string {
	e.Helper()
	id, err := e.st.CreateMultipart(e.ctx, key, store.PutOptions{Cond: c})
	switch {
	case err == nil:
		return id
	case !canHold && errors.Is(err, store.ErrPrecondition):
		return ""
	}
	e.Fatalf("CreateMultipart %s with %s: %v", key, c, err)
	return ""
}

// uploadOne starts an upload of key and sends body as its only part.
func (e *env) uploadOne(key string, c store.Condition, body []byte) (string, store.Part) {
	e.Helper()
	id := e.createIf(key, c, true)
	return id, e.part(key, id, 1, body)
}

// refused checks that the upload's complete under c fails its condition,
// and aborts the upload.
func (e *env) refused(what, key, id string, p store.Part, c store.Condition) {
	e.Helper()
	_, err := e.st.CompleteMultipart(e.ctx, key, id, []store.Part{p}, c)
	e.wantErr(what, err, store.ErrPrecondition)
	if err := e.st.AbortMultipart(e.ctx, key, id); err != nil && !errors.Is(err, store.ErrNoSuchUpload) {
		e.Fatalf("AbortMultipart after a refused complete: %v", err)
	}
}

func testCreateMultipartConditions(e *env) {
	k := e.key("obj")
	v1 := payload(100, 1)
	// Conditions that hold: the upload starts.
	e.createIf(k, ifNoneMatch, true)
	cur := e.put(k, v1, nil)
	e.createIf(k, ifMatch(cur.ETag), true)
	// Conditions that cannot hold: refused at once or at completion.
	for _, c := range []store.Condition{ifNoneMatch, ifMatch(staleETag)} {
		id := e.createIf(k, c, false)
		if id == "" {
			continue
		}
		e.refused("CompleteMultipart with "+c.String()+" started under it", k, id, e.part(k, id, 1, payload(10, 2)), c)
	}
	e.holds("object after refused uploads", k, v1)
}

func testMultipartIfNoneMatch(e *env) {
	k := e.key("obj")
	mine, theirs := payload(100, 1), payload(100, 2)
	id, p := e.uploadOne(k, ifNoneMatch, mine)
	// Another writer creates the key while the upload is open.
	e.put(k, theirs, nil)
	e.refused("CompleteMultipart If-None-Match after another writer created the key", k, id, p, ifNoneMatch)
	e.holds("object after a refused complete", k, theirs)

	fresh := e.key("fresh")
	id, p = e.uploadOne(fresh, ifNoneMatch, mine)
	obj, err := e.st.CompleteMultipart(e.ctx, fresh, id, []store.Part{p}, ifNoneMatch)
	if err != nil || obj.ETag != multipartETag(e, []store.Part{p}) {
		e.Fatalf("CompleteMultipart If-None-Match on a fresh key: %+v, %v", obj, err)
	}
	e.holds("object completed If-None-Match", fresh, mine)
}

func testMultipartIfMatch(e *env) {
	k := e.key("obj")
	v1, v2, mine := payload(100, 1), payload(100, 2), payload(100, 3)
	base := e.put(k, v1, nil)
	id, p := e.uploadOne(k, ifMatch(base.ETag), mine)
	// The object is replaced while the upload is open.
	replaced := e.put(k, v2, nil)
	e.refused("CompleteMultipart If-Match after the object was replaced", k, id, p, ifMatch(base.ETag))
	e.holds("object after a refused complete", k, v2)

	id, p = e.uploadOne(k, ifMatch(replaced.ETag), mine)
	obj, err := e.st.CompleteMultipart(e.ctx, k, id, []store.Part{p}, ifMatch(replaced.ETag))
	if err != nil || obj.ETag != multipartETag(e, []store.Part{p}) {
		e.Fatalf("CompleteMultipart If-Match the current ETag: %+v, %v", obj, err)
	}
	e.holds("object completed If-Match", k, mine)

	// A multipart ETag is a condition like any other.
	id, p = e.uploadOne(k, ifMatch(obj.ETag), v1)
	if _, err := e.st.CompleteMultipart(e.ctx, k, id, []store.Part{p}, ifMatch(obj.ETag)); err != nil {
		e.Fatalf("CompleteMultipart If-Match a multipart ETag: %v", err)
	}
	e.holds("object completed If-Match a multipart ETag", k, v1)

	missing := e.key("missing")
	id, p = e.uploadOne(missing, store.Condition{}, mine)
	e.refused("CompleteMultipart If-Match on a key with no object", missing, id, p, ifMatch(base.ETag))
	_, err = e.st.Stat(e.ctx, missing)
	e.wantErr("Stat after a refused complete", err, store.ErrNotExist)
}

func testDeleteIfMatch(e *env) {
	k := e.key("obj")
	v1 := payload(100, 1)
	obj := e.put(k, v1, nil)
	if err := e.st.DeleteIfMatch(e.ctx, e.key("missing"), staleETag); err != nil && !e.quirk(err) {
		e.Fatalf("DeleteIfMatch of a missing key: %v", err)
	}

	err := e.st.DeleteIfMatch(e.ctx, k, staleETag)
	switch e.quirks.DeleteIfMatch {
	case store.ConditionalSupported:
		e.wantErr("DeleteIfMatch with a wrong ETag", err, store.ErrPrecondition)
		e.holds("object after a refused delete", k, v1)
	case store.ConditionalIgnored:
		if err != nil {
			e.Fatalf("DeleteIfMatch with a wrong ETag on a backend that ignores the condition: %v", err)
		}
		if _, err := e.st.Stat(e.ctx, k); !errors.Is(err, store.ErrNotExist) {
			e.Fatalf("DeleteIfMatch with a wrong ETag kept the object (%v): the backend checks the condition; update its Quirks", err)
		}
		e.Logf("this backend ignores If-Match on DeleteObject: DeleteIfMatch with a wrong ETag deleted the object")
		obj = e.put(k, v1, nil)
	case store.ConditionalRejected:
		e.wantErr("DeleteIfMatch on a backend that refuses the condition", err, store.ErrNotImplemented)
		e.Logf("this backend refuses If-Match on DeleteObject (NotImplemented)")
		return
	}

	if err := e.st.DeleteIfMatch(e.ctx, k, obj.ETag); err != nil {
		e.Fatalf("DeleteIfMatch with the current ETag: %v", err)
	}
	_, err = e.st.Stat(e.ctx, k)
	e.wantErr("Stat after DeleteIfMatch", err, store.ErrNotExist)
	if err := e.st.DeleteIfMatch(e.ctx, k, obj.ETag); err != nil {
		e.Fatalf("second DeleteIfMatch: %v", err)
	}
	if err := e.st.DeleteIfMatch(e.ctx, k, ""); err == nil {
		e.Fatalf("DeleteIfMatch without an ETag succeeded")
	}
}

// quirk reports whether err is what the backend's declared quirks allow
// for a conditional delete.
func (e *env) quirk(err error) bool {
	return e.quirks.DeleteIfMatch == store.ConditionalRejected && errors.Is(err, store.ErrNotImplemented)
}
