package s3proxy

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a fake S3 server that records what reached it.
type upstream struct {
	srv *httptest.Server

	mu   sync.Mutex
	seen []seenRequest // guarded by mu
	// firstByte is closed when a body's first byte arrives.
	firstByte chan struct{}
	once      sync.Once
}

type seenRequest struct {
	method, requestURI, host string
	header                   http.Header
	body                     []byte
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{firstByte: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				u.once.Do(func() { close(u.firstByte) })
				body.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body.Bytes()})
		u.mu.Unlock()
		w.Header().Set("ETag", `"etag-1"`)
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "answer to "+r.Method)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func md5base64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// do sends a request to the proxy with Host set to a name the upstream does
// not know, as a client signing for the proxy's address would.
func do(t *testing.T, p *Proxy, method, uri string, body []byte, header http.Header) (*http.Response, []byte, error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, p.URL()+uri, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Host = "signed-host.example:1234"
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// waitDone waits until every recorded request has finished: a client may
// see a dropped connection before the proxy has written its record.
func waitDone(t *testing.T, p *Proxy) []Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	return p.Requests()
}

func TestForwardPreservesRequestAndRecords(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)

	body := bytes.Repeat([]byte("partfs"), 100000)
	uri := "/bucket/dir/a%20b%2Bc.txt?partNumber=3&uploadId=abc%2F1&x-id=UploadPart"
	hdr := http.Header{
		"Content-Md5": {md5base64(body)},
		"X-Amz-Server-Side-Encryption-Customer-Algorithm": {"AES256"},
		"Authorization": {"AWS4-HMAC-SHA256 Credential=x"},
	}
	resp, got, err := do(t, p, http.MethodPut, uri, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(got) != "answer to PUT" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("answer = %d %q %v, want the upstream's", resp.StatusCode, got, resp.Header)
	}

	seen := up.requests()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(seen))
	}
	s := seen[0]
	if s.requestURI != uri || s.host != "signed-host.example:1234" || !bytes.Equal(s.body, body) {
		t.Errorf("upstream saw %s %s host %q body %d bytes; want %s host signed-host.example:1234 body %d bytes",
			s.method, s.requestURI, s.host, len(s.body), uri, len(body))
	}
	if s.header.Get("Authorization") != "AWS4-HMAC-SHA256 Credential=x" {
		t.Errorf("Authorization not forwarded: %v", s.header)
	}

	reqs := p.Requests()
	if len(reqs) != 1 {
		t.Fatalf("recorded %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	want := Request{Method: "PUT", Bucket: "bucket", Key: "dir/a b+c.txt", UploadID: "abc/1",
		PartNumber: 3, XID: "UploadPart", Op: OpUploadPart, Status: 200, BodySize: int64(len(body))}
	if r.Method != want.Method || r.Bucket != want.Bucket || r.Key != want.Key || r.UploadID != want.UploadID ||
		r.PartNumber != want.PartNumber || r.XID != want.XID || r.Op != want.Op || r.Status != want.Status ||
		r.BodySize != want.BodySize {
		t.Errorf("record = %+v\nwant fields of %+v", r, want)
	}
	if !r.ContentMD5Matches() || !r.SSECustomer || !r.Done() || r.End.Before(r.Start) {
		t.Errorf("record: md5 match %v, sse-c %v, done %v", r.ContentMD5Matches(), r.SSECustomer, r.Done())
	}
}

func TestInferOp(t *testing.T) {
	copySrc := http.Header{"X-Amz-Copy-Source": {"/bucket/src"}}
	tests := []struct {
		method, uri string
		header      http.Header
		want        string
	}{
		{"GET", "/", nil, OpListBuckets},
		{"PUT", "/b", nil, OpCreateBucket},
		{"DELETE", "/b", nil, OpDeleteBucket},
		{"HEAD", "/b", nil, OpHeadBucket},
		{"GET", "/b?location=", nil, OpGetBucketLocation},
		{"GET", "/b?list-type=2&prefix=a%2F&delimiter=%2F", nil, OpListObjectsV2},
		{"GET", "/b?prefix=a", nil, OpListObjects},
		{"GET", "/b?uploads=&prefix=a", nil, OpListMultipartUploads},
		{"POST", "/b?delete=", nil, OpDeleteObjects},
		{"PUT", "/b/k?x-id=PutObject", nil, OpPutObject},
		{"PUT", "/b/k", copySrc, OpCopyObject},
		{"GET", "/b/k?x-id=GetObject", nil, OpGetObject},
		{"HEAD", "/b/k", nil, OpHeadObject},
		{"DELETE", "/b/k?x-id=DeleteObject", nil, OpDeleteObject},
		{"POST", "/b/k?uploads=&x-id=CreateMultipartUpload", nil, OpCreateMultipartUpload},
		{"PUT", "/b/k?partNumber=1&uploadId=u&x-id=UploadPart", nil, OpUploadPart},
		{"PUT", "/b/k?partNumber=2&uploadId=u", copySrc, OpUploadPartCopy},
		{"POST", "/b/k?uploadId=u", nil, OpCompleteMultipartUpload},
		{"DELETE", "/b/k?uploadId=u&x-id=AbortMultipartUpload", nil, OpAbortMultipartUpload},
		{"GET", "/b/k?uploadId=u", nil, OpListParts},
		{"GET", "/b/k?tagging=", nil, OpUnknown},
		{"PUT", "/b/k?acl=", nil, OpUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.uri, func(t *testing.T) {
			path, rawQuery, _ := strings.Cut(tt.uri, "?")
			q, err := url.ParseQuery(rawQuery)
			if err != nil {
				t.Fatal(err)
			}
			bucket, key := splitPath(path)
			got := inferOp(tt.method, bucket, key, q, tt.header.Get("X-Amz-Copy-Source") != "")
			if got != tt.want {
				t.Errorf("inferOp = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFaultStatus(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	p.SetFault(func(r *Request) Fault {
		if r.Op == OpUploadPart && r.PartNumber == 2 {
			return SlowDown()
		}
		return Fault{}
	})
	body := []byte("some part bytes")
	for n := 1; n <= 2; n++ {
		uri := "/b/k?uploadId=u&partNumber=" + string(rune('0'+n))
		resp, got, err := do(t, p, "PUT", uri, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus := map[int]int{1: 200, 2: 503}[n]
		if resp.StatusCode != wantStatus {
			t.Errorf("part %d: status %d, want %d", n, resp.StatusCode, wantStatus)
		}
		if n == 2 && !strings.Contains(string(got), "<Code>SlowDown</Code>") {
			t.Errorf("part 2 answer %q lacks the SlowDown code", got)
		}
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1 (the faulted one must not reach it)", n)
	}
	waitDone(t, p)
	rec := p.Ops(OpUploadPart)
	if len(rec) != 2 || rec[1].Status != 503 || rec[1].Fault.Kind != FaultStatus || rec[1].BodySize != int64(len(body)) {
		t.Errorf("records = %+v", rec)
	}
}

func TestFaultDrop(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	var calls atomic.Int32
	p.SetFault(func(r *Request) Fault {
		calls.Add(1)
		return Drop(1000)
	})
	body := bytes.Repeat([]byte{7}, 1<<20)
	if _, _, err := do(t, p, "PUT", "/b/k?uploadId=u&partNumber=1", body, nil); err == nil {
		t.Fatal("request through a dropped connection succeeded")
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
	rec := waitDone(t, p)
	if len(rec) != 1 || rec[0].Status != 0 || rec[0].BodySize < 1000 || rec[0].BodySize >= int64(len(body)) {
		t.Errorf("record = %+v, want status 0 and a body cut after about 1000 bytes", rec)
	}
}

func TestFaultDropResponse(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	p.SetFault(func(r *Request) Fault { return DropResponse() })
	if _, _, err := do(t, p, "PUT", "/b/k", []byte("x"), nil); err == nil {
		t.Fatal("request whose answer was dropped succeeded")
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1 (the server acts, the answer is lost)", n)
	}
}

func TestFaultDelay(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	p.SetFault(func(r *Request) Fault { return Delay(150 * time.Millisecond) })
	start := time.Now()
	resp, _, err := do(t, p, "GET", "/b/k", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || time.Since(start) < 150*time.Millisecond {
		t.Errorf("status %d after %v, want 200 after at least 150ms", resp.StatusCode, time.Since(start))
	}
}

// TestStreamsBody proves the body is forwarded while the client is still
// sending it: the client holds back the rest of the body until the first
// bytes have reached the upstream.
func TestStreamsBody(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	const total = 8 << 20
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte{1}, 64<<10)
		pw.Write(chunk)
		select {
		case <-up.firstByte:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
			return
		}
		for n := len(chunk); n < total; n += len(chunk) {
			pw.Write(chunk)
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(context.Background(), "PUT", p.URL()+"/b/big", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = total
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := p.Requests()[0].BodySize; got != total {
		t.Errorf("recorded body %d bytes, want %d", got, total)
	}
}
