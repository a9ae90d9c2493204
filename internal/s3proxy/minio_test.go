package s3proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/store"
	s3store "github.com/partfs/partfs/store/s3"
)

func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }

// TestThroughMinIO drives partfs's S3 client through the proxy to a real
// MinIO: signatures must survive the proxy, and every request must be
// recorded under the right operation with the body's MD5.
func TestThroughMinIO(t *testing.T) {
	srv := miniotest.Shared(t)
	bucket := srv.NewBucket(t)
	p := s3proxy.Start(t, srv.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := s3store.New(ctx, s3store.Options{
		Bucket: bucket, Endpoint: p.URL(), Region: srv.Region, PathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}

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
