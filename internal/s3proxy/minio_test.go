package s3proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/store"
	s3store "github.com/partfs/partfs/store/s3"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

// storeThrough returns partfs's S3 client for bucket of srv, sending its
// requests through p, and a context that ends with the test or after a
// minute.
func storeThrough(t *testing.T, srv *miniotest.Server, p *s3proxy.Proxy, bucket string) (context.Context, *s3store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	st, err := s3store.New(ctx, s3store.Options{
		Bucket: bucket, Endpoint: p.URL(), Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, st
}

// TestThroughMinIO drives partfs's S3 client through the proxy to a real
// MinIO: signatures must survive the proxy, and every request must be
// recorded under the right operation with the body's MD5.
func TestThroughMinIO(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.NewBucket(t)
	p := s3proxy.Start(t, srv.Endpoint)
	ctx, st := storeThrough(t, srv, p, bucket)

	small := []byte("hello through the proxy")
	if _, err := st.Put(ctx, "dir/small file+1.txt", small, store.Sum(small), store.PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	id, err := st.CreateMultipart(ctx, "big", store.PutOptions{})
	if err != nil {
		t.Fatalf("CreateMultipart: %v", err)
	}
	bodies := [][]byte{bytes.Repeat([]byte{1}, int(store.MinPartSize)), []byte("tail")}
	var parts []store.Part
	for i, b := range bodies {
		part, err := st.UploadPart(ctx, "big", id, int32(i+1), b, store.Sum(b))
		if err != nil {
			t.Fatalf("UploadPart %d: %v", i+1, err)
		}
		parts = append(parts, part)
	}
	if _, err := st.CompleteMultipart(ctx, "big", id, parts, store.Condition{}); err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	rc, err := st.Get(ctx, "dir/small file+1.txt", 0, -1, "")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, small) {
		t.Errorf("Get = %q, want %q", got, small)
	}
	if _, err := st.Stat(ctx, "big"); err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if _, err := st.List(ctx, "", "/", "", 0); err != nil {
		t.Fatalf("List: %v", err)
	}
	if err := st.Delete(ctx, "big"); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	want := []struct {
		op, key string
		part    int
	}{
		{s3proxy.OpPutObject, "dir/small file+1.txt", 0},
		{s3proxy.OpCreateMultipartUpload, "big", 0},
		{s3proxy.OpUploadPart, "big", 1},
		{s3proxy.OpUploadPart, "big", 2},
		{s3proxy.OpCompleteMultipartUpload, "big", 0},
		{s3proxy.OpGetObject, "dir/small file+1.txt", 0},
		{s3proxy.OpHeadObject, "big", 0},
		{s3proxy.OpListObjectsV2, "", 0},
		{s3proxy.OpDeleteObject, "big", 0},
	}
	recs := p.Requests()
	if len(recs) != len(want) {
		t.Fatalf("recorded %d requests, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		okStatus := r.Status == 200 || (r.Op == s3proxy.OpDeleteObject && r.Status == 204)
		if r.Op != w.op || r.Key != w.key || r.PartNumber != w.part || r.Bucket != bucket || !okStatus {
			t.Errorf("request %d: %s %q part %d in %q status %d; want %s %q part %d, success",
				i, r.Op, r.Key, r.PartNumber, r.Bucket, r.Status, w.op, w.key, w.part)
		}
		if r.XID != "" && r.XID != r.Op {
			t.Errorf("request %d inferred as %s, the client named it %s", i, r.Op, r.XID)
		}
		if (r.Op == s3proxy.OpPutObject || r.Op == s3proxy.OpUploadPart) && !r.ContentMD5Matches() {
			t.Errorf("request %d (%s): Content-MD5 %q does not match the %d bytes received", i, r.Op, r.ContentMD5, r.BodySize)
		}
	}

	// A fault must reach the client as a transient error.
	p.SetFault(func(r *s3proxy.Request) s3proxy.Fault { return s3proxy.SlowDown() })
	if _, err := st.Put(ctx, "x", small, store.Sum(small), store.PutOptions{}); !errors.Is(err, store.ErrTransient) {
		t.Errorf("Put through a SlowDown fault: %v, want store.ErrTransient", err)
	}
	p.SetFault(func(r *s3proxy.Request) s3proxy.Fault { return s3proxy.Drop(3) })
	if _, err := st.Put(ctx, "x", small, store.Sum(small), store.PutOptions{}); !errors.Is(err, store.ErrTransient) {
		t.Errorf("Put through a dropped connection: %v, want store.ErrTransient", err)
	}
}

// TestConditionsThroughMinIO makes MinIO look like a server without
// conditional writes, both ways, and checks that the preconditions each
// request carried are recorded.
func TestConditionsThroughMinIO(t *testing.T) {
	srv := miniotest.Shared(t)
	p := s3proxy.StartWith(t, s3proxy.Options{Target: srv.Endpoint, SecretKey: srv.SecretKey})
	ctx, st := storeThrough(t, srv, p, srv.NewBucket(t))
	probe := func(want store.ConditionalSupport) {
		t.Helper()
		if got, err := store.ProbeConditional(ctx, st, "probe"); err != nil || got != want {
			t.Fatalf("ProbeConditional = %v, %v; want %v", got, err, want)
		}
	}

	probe(store.ConditionalSupported)
	puts := p.Ops(s3proxy.OpPutObject)
	if len(puts) != 3 || puts[0].IfNoneMatch != "*" || puts[1].IfNoneMatch != "*" || puts[2].IfMatch == "" ||
		puts[1].Status != 412 || puts[2].Status != 412 || puts[0].ConditionsStripped {
		t.Fatalf("the probe's PutObjects: %+v", puts)
	}

	p.SetStripConditions(true)
	p.Reset()
	probe(store.ConditionalIgnored)
	for _, r := range p.Ops(s3proxy.OpPutObject) {
		if r.Status != 200 || !r.ConditionsStripped || (r.IfMatch == "" && r.IfNoneMatch == "") {
			t.Errorf("stripped PutObject: status %d, stripped %v, If-Match %q, If-None-Match %q",
				r.Status, r.ConditionsStripped, r.IfMatch, r.IfNoneMatch)
		}
	}
	// Multipart writes and deletes lose their conditions too; reads keep
	// theirs.
	body := []byte("stripped")
	obj, err := st.Put(ctx, "k", body, store.Sum(body), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.CreateMultipart(ctx, "k", store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	if err != nil {
		t.Fatalf("CreateMultipart If-None-Match on an existing key, stripped: %v", err)
	}
	part, err := st.UploadPart(ctx, "k", id, 1, body, store.Sum(body))
	if err != nil {
		t.Fatal(err)
	}
	done, err := st.CompleteMultipart(ctx, "k", id, []store.Part{part}, store.Condition{IfMatch: "0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatalf("CompleteMultipart If-Match a wrong ETag, stripped: %v", err)
	}
	if _, err := st.Get(ctx, "k", 0, -1, obj.ETag); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("Get pinned to a replaced ETag through a stripping proxy: %v, want ErrPrecondition", err)
	}
	if err := st.DeleteIfMatch(ctx, "k", done.ETag); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{s3proxy.OpCreateMultipartUpload, s3proxy.OpCompleteMultipartUpload, s3proxy.OpDeleteObject} {
		rs := p.Ops(op)
		if len(rs) == 0 || !rs[len(rs)-1].ConditionsStripped {
			t.Errorf("%s not stripped: %+v", op, rs)
		}
	}
	if gets := p.Ops(s3proxy.OpGetObject); len(gets) != 1 || gets[0].IfMatch == "" || gets[0].ConditionsStripped || gets[0].Status != 412 {
		t.Errorf("pinned GetObject through a stripping proxy: %+v", gets)
	}

	p.SetRejectConditions(true)
	p.Reset()
	probe(store.ConditionalRejected)
	if rs := p.Ops(s3proxy.OpPutObject); len(rs) != 1 || rs[0].Status != 501 || rs[0].IfNoneMatch != "*" {
		t.Fatalf("rejected PutObject: %+v", rs)
	}
	_, err = st.CreateMultipart(ctx, "k", store.PutOptions{Cond: store.Condition{IfNoneMatch: true}})
	if !errors.Is(err, store.ErrNotImplemented) {
		t.Fatalf("CreateMultipart through a rejecting proxy: %v, want ErrNotImplemented", err)
	}
	if err := st.DeleteIfMatch(ctx, "k", "0123456789abcdef0123456789abcdef"); !errors.Is(err, store.ErrNotImplemented) {
		t.Fatalf("DeleteIfMatch through a rejecting proxy: %v, want ErrNotImplemented", err)
	}
	// Writes without conditions pass.
	if _, err := st.Put(ctx, "k", body, store.Sum(body), store.PutOptions{}); err != nil {
		t.Fatalf("unconditional Put through a rejecting proxy: %v", err)
	}
	p.SetRejectConditions(false)
	p.SetStripConditions(false)
	probe(store.ConditionalSupported)
}

// TestConditionalConflictRetried answers a conditional PutObject 409
// ConditionalRequestConflict, which S3 sends when conditional writes race:
// store.WithRetry must send it again, condition and all.
func TestConditionalConflictRetried(t *testing.T) {
	srv := miniotest.Shared(t)
	p := s3proxy.Start(t, srv.Endpoint)
	ctx, s3st := storeThrough(t, srv, p, srv.NewBucket(t))
	st := store.WithRetry(s3st, store.RetryOptions{Base: time.Millisecond})
	var conflicts atomic.Int32
	p.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op == s3proxy.OpPutObject && r.IfNoneMatch != "" && conflicts.Add(1) <= 2 {
			return s3proxy.Error(http.StatusConflict, "ConditionalRequestConflict",
				"A conflicting operation occurred. If using PutObject you can retry the request.")
		}
		return s3proxy.Fault{}
	})
	body := []byte("raced")
	if _, err := st.Put(ctx, "k", body, store.Sum(body), store.PutOptions{Cond: store.Condition{IfNoneMatch: true}}); err != nil {
		t.Fatalf("Put after two conflicts: %v", err)
	}
	puts := p.Ops(s3proxy.OpPutObject)
	if len(puts) != 3 || puts[0].Status != 409 || puts[1].Status != 409 || puts[2].Status != 200 {
		t.Fatalf("PutObjects %+v, want 409, 409, 200", puts)
	}
	for _, r := range puts {
		if r.IfNoneMatch != "*" {
			t.Errorf("request %d carried If-None-Match %q", r.Seq, r.IfNoneMatch)
		}
	}
}
