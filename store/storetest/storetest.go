// Package storetest is the conformance suite for store.Store: it checks that
// an implementation behaves as S3 does in everything partfs relies on, and
// runs against store/memstore and against a real S3-compatible server.
//
// Where S3 servers may differ (MinIO and AWS), the suite accepts only what
// AWS S3 does, with two exceptions: a backend's declared Quirks, and a
// CreateMultipart whose condition cannot hold, which may fail at once (as
// MinIO's does) or leave the failure to CompleteMultipart (as S3's does). Beyond S3 it pins partfs's own contract for ranges: a Get
// that starts at or past the end, or asks for 0 bytes, returns an empty body.
//
// Every subtest writes under its own prefix, unique per run, and removes
// its objects and uploads afterwards, so the suite can share a bucket.
//
// # Quirks
//
// A backend known to fall short of S3 somewhere declares it in Quirks,
// given to RunWith. The suite then checks that the backend does exactly
// what is declared, and says so in the test log, so that the shortfall is
// on record and a change of the backend shows as a failure.
package storetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
)

// Quirks are the known differences of a backend from S3. The zero Quirks
// is S3.
type Quirks struct {
	// DeleteIfMatch is what the backend does with the If-Match of a
	// DeleteIfMatch: store.ConditionalSupported, as S3 does;
	// store.ConditionalIgnored, deleting whatever version is there (the
	// pinned MinIO); or store.ConditionalRejected (ErrNotImplemented).
	DeleteIfMatch store.ConditionalSupport
}

// Run runs the suite for a backend that behaves as S3 does. newStore is
// called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	RunWith(t, newStore, Quirks{})
}

// RunWith runs the suite for a backend with the given quirks.
func RunWith(t *testing.T, newStore func(t *testing.T) store.Store, quirks Quirks) {
	// A fresh prefix per run keeps runs against a shared bucket apart.
	run := fmt.Sprintf("%016x", rand.Uint64())
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		{"PutStat", testPutStat},
		{"PutOverwrite", testPutOverwrite},
		{"PutEmpty", testPutEmpty},
		{"PutBadDigest", testPutBadDigest},
		{"StatMissing", testStatMissing},
		{"GetRanges", testGetRanges},
		{"GetPinned", testGetPinned},
		{"Delete", testDelete},
		{"Copy", testCopy},
		{"List", testList},
		{"ListEmpty", testListEmpty},
		{"Multipart", testMultipart},
		{"MultipartSinglePart", testMultipartSinglePart},
		{"MultipartOverwritePart", testMultipartOverwritePart},
		{"MultipartBadDigest", testMultipartBadDigest},
		{"MultipartEntityTooSmall", testMultipartEntityTooSmall},
		{"MultipartInvalidPart", testMultipartInvalidPart},
		{"MultipartAbort", testMultipartAbort},
		{"UploadPartCopy", testUploadPartCopy},
		{"ListMultipart", testListMultipart},
		{"PutIfNoneMatch", testPutIfNoneMatch},
		{"PutIfMatch", testPutIfMatch},
		{"CreateMultipartConditions", testCreateMultipartConditions},
		{"MultipartIfNoneMatch", testMultipartIfNoneMatch},
		{"MultipartIfMatch", testMultipartIfMatch},
		{"DeleteIfMatch", testDeleteIfMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(newEnv(t, newStore(t), "storetest/"+run+"/"+tt.name+"/", quirks))
		})
	}
}

// env is one subtest's store, context and key prefix.
type env struct {
	*testing.T
	st     store.Store
	ctx    context.Context
	prefix string
	quirks Quirks
}

func newEnv(t *testing.T, st store.Store, prefix string, quirks Quirks) *env {
	e := &env{T: t, st: st, ctx: t.Context(), prefix: prefix, quirks: quirks}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup removes what the subtest left under its prefix. It runs after
// t.Context is canceled, so it has a context of its own.
func (e *env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ups, err := e.st.ListMultipart(ctx, e.prefix)
	if err != nil {
		e.Errorf("cleanup: list uploads: %v", err)
	}
	for _, u := range ups {
		if err := e.st.AbortMultipart(ctx, u.Key, u.UploadID); err != nil {
			e.Errorf("cleanup: abort %s: %v", u.Key, err)
		}
	}
	token := ""
	for {
		page, err := e.st.List(ctx, e.prefix, "", token, 0)
		if err != nil {
			e.Errorf("cleanup: list: %v", err)
			return
		}
		for _, o := range page.Objects {
			if err := e.st.Delete(ctx, o.Key); err != nil {
				e.Errorf("cleanup: delete %s: %v", o.Key, err)
			}
		}
		if token = page.Next; token == "" {
			return
		}
	}
}

func (e *env) key(name string) string { return e.prefix + name }

func (e *env) put(key string, body []byte, meta store.Metadata) store.Object {
	e.Helper()
	obj, err := e.st.Put(e.ctx, key, body, store.Sum(body), store.PutOptions{Metadata: meta})
	if err != nil {
		e.Fatalf("Put %s: %v", key, err)
	}
	return obj
}

func (e *env) stat(key string) store.Object {
	e.Helper()
	obj, err := e.st.Stat(e.ctx, key)
	if err != nil {
		e.Fatalf("Stat %s: %v", key, err)
	}
	return obj
}

// get reads a range in full.
func (e *env) get(key string, off, length int64, etag string) ([]byte, error) {
	rc, err := e.st.Get(e.ctx, key, off, length, etag)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (e *env) mustGet(key string, off, length int64, etag string) []byte {
	e.Helper()
	b, err := e.get(key, off, length, etag)
	if err != nil {
		e.Fatalf("Get %s [%d,+%d): %v", key, off, length, err)
	}
	return b
}

// wantErr fails unless errors.Is(err, target).
func (e *env) wantErr(what string, err, target error) {
	e.Helper()
	if !errors.Is(err, target) {
		e.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// payload returns n deterministic pseudo-random bytes; different seeds give
// different bytes and so different MD5s.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func sameBytes(e *env, what string, got, want []byte) {
	e.Helper()
	if !bytes.Equal(got, want) {
		e.Fatalf("%s: got %d bytes (md5 %s), want %d bytes (md5 %s)", what, len(got), md5hex(got), len(want), md5hex(want))
	}
}

// sameMetadata compares exactly: S3 returns user metadata with lower-case keys.
func sameMetadata(e *env, what string, got, want store.Metadata) {
	e.Helper()
	if len(got) != len(want) {
		e.Fatalf("%s: metadata %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			e.Fatalf("%s: metadata %v, want %v", what, got, want)
		}
	}
}

var fileMeta = store.Metadata{"mode": "33188", "uid": "1000", "gid": "1000", "mtime": "1700000000"}

func testPutStat(e *env) {
	body := payload(1000, 1)
	k := e.key("obj")
	before := time.Now()
	obj := e.put(k, body, fileMeta)
	if obj.ETag != md5hex(body) || obj.Size != int64(len(body)) {
		e.Fatalf("Put returned %+v, want ETag %s and size %d", obj, md5hex(body), len(body))
	}
	got := e.stat(k)
	if got.Key != k || got.Size != int64(len(body)) || got.ETag != md5hex(body) {
		e.Fatalf("Stat %+v, want key %s, size %d, ETag %s", got, k, len(body), md5hex(body))
	}
	if d := got.LastModified.Sub(before); d < -time.Hour || d > time.Hour {
		e.Fatalf("LastModified %v, far from now (%v)", got.LastModified, before)
	}
	sameMetadata(e, "Stat", got.Metadata, fileMeta)
	sameBytes(e, "Get", e.mustGet(k, 0, -1, ""), body)
}

func testPutOverwrite(e *env) {
	k := e.key("obj")
	e.put(k, payload(100, 1), fileMeta)
	v2 := payload(50, 2)
	meta := store.Metadata{"mode": "33261"}
	e.put(k, v2, meta)
	got := e.stat(k)
	if got.Size != 50 || got.ETag != md5hex(v2) {
		e.Fatalf("Stat after overwrite %+v", got)
	}
	sameMetadata(e, "Stat after overwrite", got.Metadata, meta)
	sameBytes(e, "Get after overwrite", e.mustGet(k, 0, -1, ""), v2)
}

func testPutEmpty(e *env) {
	k := e.key("empty")
	obj := e.put(k, nil, nil)
	if obj.ETag != md5hex(nil) || obj.Size != 0 {
		e.Fatalf("Put of an empty body returned %+v", obj)
	}
	if got := e.stat(k); got.Size != 0 || got.ETag != md5hex(nil) {
		e.Fatalf("Stat of an empty object %+v", got)
	}
	for _, r := range [][2]int64{{0, -1}, {0, 10}, {5, -1}} {
		if b := e.mustGet(k, r[0], r[1], ""); len(b) != 0 {
			e.Fatalf("Get(%d, %d) of an empty object returned %d bytes", r[0], r[1], len(b))
		}
	}
}

func testPutBadDigest(e *env) {
	k := e.key("bad")
	body := payload(100, 1)
	_, err := e.st.Put(e.ctx, k, body, store.Sum(payload(100, 2)), store.PutOptions{})
	e.wantErr("Put with a wrong Content-MD5", err, store.ErrBadDigest)
	_, err = e.st.Stat(e.ctx, k)
	e.wantErr("Stat after a rejected Put", err, store.ErrNotExist)
}

func testStatMissing(e *env) {
	_, err := e.st.Stat(e.ctx, e.key("missing"))
	e.wantErr("Stat of a missing key", err, fs.ErrNotExist)
	e.wantErr("Stat of a missing key", err, store.ErrNotExist)
	_, err = e.get(e.key("missing"), 0, -1, "")
	e.wantErr("Get of a missing key", err, store.ErrNotExist)
}

func testGetRanges(e *env) {
	body := payload(1000, 3)
	k := e.key("obj")
	obj := e.put(k, body, nil)
	tests := []struct{ off, length, wantOff, wantEnd int64 }{
		{0, -1, 0, 1000},
		{0, 1000, 0, 1000},
		{0, 5000, 0, 1000},
		{0, 1, 0, 1},
		{10, 20, 10, 30},
		{990, 10, 990, 1000},
		{995, 10, 995, 1000}, // last partial range, clipped
		{999, -1, 999, 1000},
		{500, -1, 500, 1000},
		{10, 0, 10, 10},  // zero length: empty
		{1000, 10, 0, 0}, // at the end: empty
		{1000, -1, 0, 0}, // at the end, open: empty
		{4096, 1, 0, 0},  // past the end: empty
	}
	for _, tt := range tests {
		for _, etag := range []string{"", obj.ETag} {
			got := e.mustGet(k, tt.off, tt.length, etag)
			sameBytes(e, fmt.Sprintf("Get(%d, %d, %q)", tt.off, tt.length, etag), got, body[tt.wantOff:tt.wantEnd])
		}
	}
}

func testGetPinned(e *env) {
	k := e.key("obj")
	v1 := e.put(k, payload(100, 1), nil)
	v2body := payload(100, 2)
	v2 := e.put(k, v2body, nil)
	_, err := e.get(k, 0, -1, v1.ETag)
	e.wantErr("Get pinned to a replaced ETag", err, store.ErrPrecondition)
	_, err = e.get(k, 10, 20, v1.ETag)
	e.wantErr("ranged Get pinned to a replaced ETag", err, store.ErrPrecondition)
	sameBytes(e, "Get pinned to the current ETag", e.mustGet(k, 10, 20, v2.ETag), v2body[10:30])
}

func testDelete(e *env) {
	k := e.key("obj")
	if err := e.st.Delete(e.ctx, k); err != nil {
		e.Fatalf("Delete of a missing key: %v", err)
	}
	e.put(k, payload(10, 1), nil)
	if err := e.st.Delete(e.ctx, k); err != nil {
		e.Fatalf("Delete: %v", err)
	}
	_, err := e.st.Stat(e.ctx, k)
	e.wantErr("Stat after Delete", err, fs.ErrNotExist)
	if err := e.st.Delete(e.ctx, k); err != nil {
		e.Fatalf("second Delete: %v", err)
	}
}

func testCopy(e *env) {
	src := e.key("src")
	body := payload(2000, 4)
	obj := e.put(src, body, fileMeta)
	other := store.Metadata{"mode": "16877", "mtime": "1600000000"}
	stale := md5hex(payload(1, 9))

	kept := e.key("kept")
	c, err := e.st.Copy(e.ctx, src, kept, obj.ETag, nil)
	if err != nil || c.ETag == "" {
		e.Fatalf("Copy keeping metadata: %+v, %v", c, err)
	}
	got := e.stat(kept)
	sameMetadata(e, "Copy keeping metadata", got.Metadata, fileMeta)
	if got.Size != int64(len(body)) || got.ETag != c.ETag {
		e.Fatalf("Stat of the copy %+v; Copy returned %+v", got, c)
	}
	sameBytes(e, "copied bytes", e.mustGet(kept, 0, -1, ""), body)

	replaced := e.key("replaced")
	if _, err := e.st.Copy(e.ctx, src, replaced, "", &store.PutOptions{Metadata: other}); err != nil {
		e.Fatalf("Copy replacing metadata: %v", err)
	}
	sameMetadata(e, "Copy replacing metadata", e.stat(replaced).Metadata, other)

	pinned := e.key("pinned")
	_, err = e.st.Copy(e.ctx, src, pinned, stale, nil)
	e.wantErr("Copy pinned to a stale ETag", err, store.ErrPrecondition)
	_, err = e.st.Stat(e.ctx, pinned)
	e.wantErr("Stat after a failed Copy", err, store.ErrNotExist)
	_, err = e.st.Copy(e.ctx, e.key("missing"), pinned, "", nil)
	e.wantErr("Copy of a missing key", err, store.ErrNotExist)

	// Changing metadata in place is a copy onto itself; keeping the
	// metadata that way is a request S3 refuses.
	if _, err := e.st.Copy(e.ctx, src, src, obj.ETag, &store.PutOptions{Metadata: other}); err != nil {
		e.Fatalf("Copy onto itself replacing metadata: %v", err)
	}
	got = e.stat(src)
	sameMetadata(e, "Copy onto itself", got.Metadata, other)
	sameBytes(e, "bytes after a copy onto itself", e.mustGet(src, 0, -1, ""), body)
	if _, err := e.st.Copy(e.ctx, src, src, "", nil); err == nil {
		e.Fatalf("Copy onto itself keeping metadata succeeded; S3 refuses it")
	}
}

var multipartETagForm = regexp.MustCompile(`^[0-9a-f]{32}-[0-9]+$`)

// multipartETag is S3's ETag of an object completed from parts with plain
// MD5 ETags.
func multipartETag(e *env, parts []store.Part) string {
	e.Helper()
	var sums []byte
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			e.Fatalf("part %d has ETag %q, not an MD5", p.Number, p.ETag)
		}
		sums = append(sums, b...)
	}
	return fmt.Sprintf("%s-%d", md5hex(sums), len(parts))
}
