package s3_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/s3"
	"github.com/partfs/partfs/store/storetest"
)

func TestMain(m *testing.M) {
	// Tests give credentials explicitly; keep the AWS chain from looking
	// at the developer's files or at instance metadata.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Unsetenv("AWS_PROFILE")
	os.Exit(miniotest.Main(m))
}

// options returns Options for a fresh bucket on srv.
func options(t testing.TB, srv *miniotest.Server) s3.Options {
	return s3.Options{
		Bucket:    srv.NewBucket(t),
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		PathStyle: true,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}
}

func newStore(t testing.TB, opts s3.Options) *s3.Store {
	t.Helper()
	st, err := s3.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return st
}

// TestConformance runs the suite against the pinned MinIO, which ignores
// If-Match on DeleteObject (see TestProbeConditional).
func TestConformance(t *testing.T) {
	srv := miniotest.Shared(t)
	storetest.RunWith(t, func(t *testing.T) store.Store {
		return newStore(t, options(t, srv))
	}, storetest.Quirks{DeleteIfMatch: store.ConditionalIgnored})
}

// TestCABundleEnv runs with AWS_CA_BUNDLE set, as many users' environments
// have it: the SDK then insists on its own buildable HTTP client.
func TestCABundleEnv(t *testing.T) {
	system := "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(system); err != nil {
		t.Fatalf("system CA bundle: %v", err)
	}
	plain := miniotest.Shared(t)
	secure := miniotest.SharedWith(t, miniotest.Options{TLS: true})
	tests := []struct {
		name   string
		srv    *miniotest.Server
		env    string // AWS_CA_BUNDLE
		bundle string // Options.CABundle
	}{
		{"http", plain, system, ""},
		{"https env", secure, secure.CAFile, ""},
		{"https option", secure, system, secure.CAFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_CA_BUNDLE", tt.env)
			opts := options(t, tt.srv)
			opts.CABundle = tt.bundle
			roundTrip(t, newStore(t, opts))
		})
	}
	t.Run("https untrusted", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", system)
		st := newStore(t, options(t, secure))
		err := st.CheckBucket(context.Background())
		if err == nil || errors.Is(err, store.ErrTransient) {
			t.Fatalf("CheckBucket against an untrusted certificate: %v, want a non-transient error", err)
		}
	})
}

// roundTrip puts, reads and deletes one object.
func roundTrip(t *testing.T, st *s3.Store) {
	t.Helper()
	ctx := t.Context()
	if err := st.CheckBucket(ctx); err != nil {
		t.Fatalf("CheckBucket: %v", err)
	}
	body := []byte("hello, partfs")
	if _, err := st.Put(ctx, "k", body, store.Sum(body), store.PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got := get(t, st, "k", 0, -1, ""); !bytes.Equal(got, body) {
		t.Fatalf("Get = %q, want %q", got, body)
	}
	if err := st.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func get(t *testing.T, st store.Store, key string, off, length int64, etag string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key, off, length, etag)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get %s: read: %v", key, err)
	}
	return b
}

func TestCheckBucket(t *testing.T) {
	srv := miniotest.Shared(t)
	good := options(t, srv)
	closed := closedPort(t)
	tests := []struct {
		name   string
		change func(*s3.Options)
		want   []error // nil: success
	}{
		{"ok", func(*s3.Options) {}, nil},
		{"missing bucket", func(o *s3.Options) { o.Bucket = "partfs-no-such-bucket" },
			[]error{s3.ErrNoSuchBucket, store.ErrNotExist}},
		{"wrong secret", func(o *s3.Options) { o.SecretKey = "not-the-secret" },
			[]error{store.ErrAccessDenied}},
		{"unknown access key", func(o *s3.Options) { o.AccessKey = "nobody" },
			[]error{store.ErrAccessDenied}},
		{"unreachable", func(o *s3.Options) { o.Endpoint = "http://" + closed },
			[]error{s3.ErrUnreachable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			tt.change(&opts)
			st := newStore(t, opts)
			start := time.Now()
			err := st.CheckBucket(t.Context())
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("CheckBucket took %v; it must fail fast", d)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckBucket: %v", err)
				}
				return
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("CheckBucket: %v; want errors.Is %v", err, want)
				}
			}
			for _, other := range []error{s3.ErrNoSuchBucket, store.ErrAccessDenied, s3.ErrUnreachable} {
				if !contains(tt.want, other) && errors.Is(err, other) {
					t.Errorf("CheckBucket: %v; is also %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), opts.Bucket) {
				t.Errorf("CheckBucket: %q does not name the bucket %q", err, opts.Bucket)
			}
		})
	}
}

func contains(errs []error, err error) bool {
	for _, e := range errs {
		if e == err {
			return true
		}
	}
	return false
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestMissingBucketOnRequests(t *testing.T) {
	opts := options(t, miniotest.Shared(t))
	opts.Bucket = "partfs-gone"
	st := newStore(t, opts)
	_, err := st.Stat(t.Context(), "k")
	if !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat in a missing bucket: %v, want ErrNotExist", err)
	}
	body := []byte("x")
	_, err = st.Put(t.Context(), "k", body, store.Sum(body), store.PutOptions{})
	if !errors.Is(err, s3.ErrNoSuchBucket) || !strings.Contains(err.Error(), "partfs-gone") {
		t.Fatalf("Put in a missing bucket: %v, want ErrNoSuchBucket naming the bucket", err)
	}
	if err := st.Delete(t.Context(), "k"); !errors.Is(err, s3.ErrNoSuchBucket) {
		t.Fatalf("Delete in a missing bucket: %v, want ErrNoSuchBucket", err)
	}
}

// TestEnvCredentials leaves the keys out of Options so that the standard
// chain finds them in the environment.
func TestEnvCredentials(t *testing.T) {
	srv := miniotest.Shared(t)
	opts := options(t, srv)
	t.Setenv("AWS_ACCESS_KEY_ID", opts.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", opts.SecretKey)
	opts.AccessKey, opts.SecretKey = "", ""
	roundTrip(t, newStore(t, opts))
}

// TestCopyKeys copies keys whose names need escaping in x-amz-copy-source.
func TestCopyKeys(t *testing.T) {
	st := newStore(t, options(t, miniotest.Shared(t)))
	ctx := t.Context()
	keys := []string{
		"with space", "plus+sign", "per%cent", "question?mark", "hash#tag",
		"amp&equals=", "ünïcödé/日本語", "semi;colon,comma", "tilde~quote'",
	}
	for _, k := range keys {
		t.Run(k, func(t *testing.T) {
			body := []byte("body of " + k)
			obj, err := st.Put(ctx, "src/"+k, body, store.Sum(body), store.PutOptions{})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if _, err := st.Copy(ctx, "src/"+k, "dst/"+k, obj.ETag, nil); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if got := get(t, st, "dst/"+k, 0, -1, ""); !bytes.Equal(got, body) {
				t.Fatalf("copy holds %q, want %q", got, body)
			}
			id, err := st.CreateMultipart(ctx, "mp/"+k, store.PutOptions{})
			if err != nil {
				t.Fatalf("CreateMultipart: %v", err)
			}
			p, err := st.UploadPartCopy(ctx, "mp/"+k, id, 1, "src/"+k, obj.ETag, 5, int64(len(body)-5))
			if err != nil {
				t.Fatalf("UploadPartCopy: %v", err)
			}
			if _, err := st.CompleteMultipart(ctx, "mp/"+k, id, []store.Part{p}, store.Condition{}); err != nil {
				t.Fatalf("CompleteMultipart: %v", err)
			}
			if got := get(t, st, "mp/"+k, 0, -1, ""); !bytes.Equal(got, body[5:]) {
				t.Fatalf("part copy holds %q, want %q", got, body[5:])
			}
		})
	}
}

// recorder is a reverse proxy in front of MinIO that records request
// headers and can answer with an error instead of forwarding.
type recorder struct {
	mu   sync.Mutex
	reqs []http.Header // guarded by mu
	fail int           // guarded by mu; status to answer with, 0 forwards
}

func newRecorder(t *testing.T, target string) (*recorder, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	r := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Header.Clone())
		fail := r.fail
		r.mu.Unlock()
		if fail != 0 {
			io.Copy(io.Discard, req.Body)
			w.WriteHeader(fail)
			return
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func (r *recorder) take() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.reqs
	r.reqs = nil
	return reqs
}

func (r *recorder) setFail(status int) {
	r.mu.Lock()
	r.fail = status
	r.mu.Unlock()
}

// TestRequestHeaders checks what goes on the wire for bodies: Content-MD5,
// the chosen payload signing, and none of the SDK's default checksums.
func TestRequestHeaders(t *testing.T) {
	srv := miniotest.Shared(t)
	for _, sign := range []bool{false, true} {
		t.Run(map[bool]string{false: "unsigned", true: "signed"}[sign], func(t *testing.T) {
			rec, endpoint := newRecorder(t, srv.Endpoint)
			opts := options(t, srv)
			opts.Endpoint = endpoint
			opts.SignPayload = sign
			st := newStore(t, opts)
			ctx := t.Context()
			body := bytes.Repeat([]byte("partfs"), 1<<20)
			sum := store.Sum(body)
			wantMD5 := base64.StdEncoding.EncodeToString(sum[:])

			rec.take()
			obj, err := st.Put(ctx, "put", body, sum, store.PutOptions{})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			checkBodyHeaders(t, "Put", rec.take(), wantMD5, sign)
			id, err := st.CreateMultipart(ctx, "mp", store.PutOptions{})
			if err != nil {
				t.Fatalf("CreateMultipart: %v", err)
			}
			rec.take()
			if _, err := st.UploadPart(ctx, "mp", id, 1, body, sum); err != nil {
				t.Fatalf("UploadPart: %v", err)
			}
			checkBodyHeaders(t, "UploadPart", rec.take(), wantMD5, sign)
			if err := st.AbortMultipart(ctx, "mp", id); err != nil {
				t.Fatalf("AbortMultipart: %v", err)
			}

			rec.take()
			get(t, st, "put", 10, 20, obj.ETag)
			h := rec.take()
			if len(h) != 1 || h[0].Get("If-Match") != `"`+obj.ETag+`"` || h[0].Get("Range") != "bytes=10-29" {
				t.Fatalf("pinned ranged Get sent %v", h)
			}
		})
	}
}

func checkBodyHeaders(t *testing.T, op string, reqs []http.Header, wantMD5 string, signed bool) {
	t.Helper()
	if len(reqs) != 1 {
		t.Fatalf("%s sent %d requests, want 1", op, len(reqs))
	}
	h := reqs[0]
	if got := h.Get("Content-Md5"); got != wantMD5 {
		t.Errorf("%s: Content-MD5 %q, want %q", op, got, wantMD5)
	}
	sha := h.Get("X-Amz-Content-Sha256")
	if signed != (sha != "UNSIGNED-PAYLOAD" && len(sha) == 64) {
		t.Errorf("%s: X-Amz-Content-Sha256 %q with SignPayload %v", op, sha, signed)
	}
	for name := range h {
		if strings.HasPrefix(strings.ToLower(name), "x-amz-checksum") || strings.EqualFold(name, "X-Amz-Sdk-Checksum-Algorithm") {
			t.Errorf("%s: sent %s; the SDK's checksums should be off", op, name)
		}
	}
	if enc := h.Get("Content-Encoding"); enc != "" {
		t.Errorf("%s: Content-Encoding %q; the body should go as is", op, enc)
	}
}

// TestNoSDKRetries checks that a 503 is reported at once as transient,
// after exactly one request: retrying belongs to store.WithRetry.
func TestNoSDKRetries(t *testing.T) {
	srv := miniotest.Shared(t)
	rec, endpoint := newRecorder(t, srv.Endpoint)
	opts := options(t, srv)
	opts.Endpoint = endpoint
	st := newStore(t, opts)
	body := []byte("x")
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError} {
		rec.take()
		rec.setFail(status)
		_, err := st.Put(t.Context(), "k", body, store.Sum(body), store.PutOptions{})
		if !errors.Is(err, store.ErrTransient) {
			t.Errorf("Put answered %d: %v, want ErrTransient", status, err)
		}
		if n := len(rec.take()); n != 1 {
			t.Errorf("Put answered %d sent %d requests, want 1", status, n)
		}
	}
}

func TestSSECustomerKey(t *testing.T) {
	srv := miniotest.SharedWith(t, miniotest.Options{TLS: true})
	opts := options(t, srv)
	opts.CABundle = srv.CAFile
	key := bytes.Repeat([]byte{0x5a}, 32)
	opts.SSECustomerKey = key
	st := newStore(t, opts)
	ctx := t.Context()

	part := bytes.Repeat([]byte("0123456789abcdef"), int(store.MinPartSize/16))
	small := []byte("secret bytes")
	if _, err := st.Put(ctx, "small", small, store.Sum(small), store.PutOptions{Metadata: store.Metadata{"mode": "33188"}}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	obj, err := st.Stat(ctx, "small")
	if err != nil || obj.Size != int64(len(small)) || obj.Metadata["mode"] != "33188" {
		t.Fatalf("Stat: %+v, %v", obj, err)
	}
	if got := get(t, st, "small", 7, -1, obj.ETag); string(got) != "bytes" {
		t.Fatalf("Get = %q", got)
	}
	id, err := st.CreateMultipart(ctx, "big", store.PutOptions{})
	if err != nil {
		t.Fatalf("CreateMultipart: %v", err)
	}
	p1, err := st.UploadPart(ctx, "big", id, 1, part, store.Sum(part))
	if err != nil {
		t.Fatalf("UploadPart: %v", err)
	}
	p2, err := st.UploadPartCopy(ctx, "big", id, 2, "small", obj.ETag, 0, int64(len(small)))
	if err != nil {
		t.Fatalf("UploadPartCopy: %v", err)
	}
	big, err := st.CompleteMultipart(ctx, "big", id, []store.Part{p1, p2}, store.Condition{})
	if err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	if want := int64(len(part) + len(small)); big.Size != want {
		t.Fatalf("CompleteMultipart size %d, want %d", big.Size, want)
	}
	if got := get(t, st, "big", int64(len(part)), -1, ""); !bytes.Equal(got, small) {
		t.Fatalf("tail of the multipart object = %q", got)
	}
	if _, err := st.Copy(ctx, "small", "copy", "", nil); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if got := get(t, st, "copy", 0, -1, ""); !bytes.Equal(got, small) {
		t.Fatalf("copy = %q", got)
	}

	// Without the key the data cannot be read, and no error shows the key.
	opts.SSECustomerKey = nil
	keyless := newStore(t, opts)
	_, err = keyless.Get(ctx, "small", 0, -1, "")
	if err == nil {
		t.Fatal("Get without the SSE-C key succeeded")
	}
	for _, enc := range []string{base64.StdEncoding.EncodeToString(key), string(key)} {
		if strings.Contains(err.Error(), enc) {
			t.Fatalf("error shows the key: %v", err)
		}
	}
	opts.SSECustomerKey = key[:16]
	if _, err := s3.New(ctx, opts); err == nil || strings.Contains(err.Error(), string(key[:16])) {
		t.Fatalf("New with a 16-byte SSE-C key: %v", err)
	}
}

// TestSSECustomerKeyOverHTTP documents that S3 refuses SSE-C without TLS,
// with a clear, non-transient error.
func TestSSECustomerKeyOverHTTP(t *testing.T) {
	opts := options(t, miniotest.Shared(t))
	opts.SSECustomerKey = bytes.Repeat([]byte{1}, 32)
	st := newStore(t, opts)
	body := []byte("x")
	_, err := st.Put(t.Context(), "k", body, store.Sum(body), store.PutOptions{})
	if err == nil || store.IsTransient(err) {
		t.Fatalf("Put with SSE-C over HTTP: %v, want a permanent error", err)
	}
}

func TestRegionFromEnvironment(t *testing.T) {
	srv := miniotest.Shared(t)
	opts := options(t, srv)
	opts.Region = ""
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	roundTrip(t, newStore(t, opts)) // falls back to us-east-1, MinIO's region
}

func TestCABundleMissingFile(t *testing.T) {
	_, err := s3.New(context.Background(), s3.Options{Bucket: "b", CABundle: filepath.Join(t.TempDir(), "none.pem")})
	if err == nil {
		t.Fatal("New with a missing CA bundle succeeded")
	}
}

func TestBadDigest(t *testing.T) {
	st := newStore(t, options(t, miniotest.Shared(t)))
	body := []byte("the body")
	_, err := st.Put(t.Context(), "k", body, store.Sum([]byte("another body")), store.PutOptions{})
	if !errors.Is(err, store.ErrBadDigest) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("Put with a wrong MD5: %v, want ErrBadDigest naming the key", err)
	}
}

// TestProbeConditional runs the probe against the pinned MinIO, which
// checks conditional writes, and shows what it does with If-Match on
// DeleteObject: it ignores the header and deletes whatever is there.
func TestProbeConditional(t *testing.T) {
	st := newStore(t, options(t, miniotest.Shared(t)))
	got, err := store.ProbeConditional(t.Context(), st, "probe")
	if err != nil || got != store.ConditionalSupported {
		t.Fatalf("ProbeConditional = %v, %v; want %v", got, err, store.ConditionalSupported)
	}
	// When a MinIO that checks If-Match on DeleteObject is pinned, this
	// and storetest's note on DeleteIfMatch change together.
	del, err := store.ProbeConditionalDelete(t.Context(), st, "probe")
	if err != nil || del != store.ConditionalIgnored {
		t.Fatalf("ProbeConditionalDelete = %v, %v; the pinned MinIO ignores If-Match on DeleteObject (%v)", del, err, store.ConditionalIgnored)
	}
}
