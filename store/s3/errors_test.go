package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/partfs/partfs/store"
)

// apiError builds the error chain the SDK returns for an S3 error answer.
func apiError(status int, code string) error {
	return &smithy.OperationError{
		ServiceID:     "S3",
		OperationName: "PutObject",
		Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{
				Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
				Err:      &smithy.GenericAPIError{Code: code, Message: "msg"},
			},
		},
	}
}

func TestClassify(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"NoSuchKey", apiError(404, "NoSuchKey"), store.ErrNotExist},
		{"HEAD 404", apiError(404, "NotFound"), store.ErrNotExist},
		{"bare 404", apiError(404, ""), store.ErrNotExist},
		{"NoSuchUpload is 404 too", apiError(404, "NoSuchUpload"), store.ErrNoSuchUpload},
		{"PreconditionFailed", apiError(412, "PreconditionFailed"), store.ErrPrecondition},
		{"bare 412", apiError(412, ""), store.ErrPrecondition},
		{"BadDigest", apiError(400, "BadDigest"), store.ErrBadDigest},
		{"EntityTooSmall", apiError(400, "EntityTooSmall"), store.ErrEntityTooSmall},
		{"InvalidPart", apiError(400, "InvalidPart"), store.ErrInvalidPart},
		{"InvalidPartOrder", apiError(400, "InvalidPartOrder"), store.ErrInvalidPart},
		{"EntityTooLarge", apiError(400, "EntityTooLarge"), store.ErrTooLarge},
		{"AccessDenied", apiError(403, "AccessDenied"), store.ErrAccessDenied},
		{"InvalidAccessKeyId", apiError(403, "InvalidAccessKeyId"), store.ErrAccessDenied},
		{"SignatureDoesNotMatch", apiError(403, "SignatureDoesNotMatch"), store.ErrAccessDenied},
		{"bare 403", apiError(403, ""), store.ErrAccessDenied},
		{"SlowDown", apiError(503, "SlowDown"), store.ErrTransient},
		{"InternalError", apiError(500, "InternalError"), store.ErrTransient},
		{"RequestTimeout", apiError(400, "RequestTimeout"), store.ErrTransient},
		{"502", apiError(502, ""), store.ErrTransient},
		{"429", apiError(429, ""), store.ErrTransient},
		{"other 400", apiError(400, "InvalidArgument"), nil},
		{"ConditionalRequestConflict", apiError(409, "ConditionalRequestConflict"), store.ErrTransient},
		{"other 409", apiError(409, "BucketNotEmpty"), nil},
		{"NotImplemented", apiError(501, "NotImplemented"), store.ErrNotImplemented},
		{"bare 501", apiError(501, ""), store.ErrNotImplemented},
		{"connection reset", &smithyhttp.RequestSendError{Err: &url.Error{Op: "Put", URL: "u", Err: reset}}, store.ErrTransient},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), store.ErrTransient},
		{"EOF", &smithy.DeserializationError{Err: io.EOF}, store.ErrTransient},
		{"response timeout", &awshttp.ResponseTimeoutError{}, store.ErrTransient},
		{"plain error", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestWrapErr(t *testing.T) {
	s := &Store{bucket: "bkt", endpoint: "http://127.0.0.1:1"}
	ctx := context.Background()

	err := s.wrapErr(ctx, "put", "dir/key", apiError(412, "PreconditionFailed"))
	var apiErr smithy.APIError
	if !errors.Is(err, store.ErrPrecondition) || !errors.As(err, &apiErr) || !strings.Contains(err.Error(), `put "dir/key"`) {
		t.Fatalf("wrapErr = %v; want ErrPrecondition, the SDK error and op and key in the message", err)
	}

	err = s.wrapErr(ctx, "get", "k", apiError(404, "NoSuchBucket"))
	if !errors.Is(err, store.ErrNotExist) || !errors.Is(err, ErrNoSuchBucket) || !strings.Contains(err.Error(), `bucket "bkt" does not exist`) {
		t.Fatalf("wrapErr(NoSuchBucket) = %v", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	err = s.wrapErr(canceled, "get", "k", &smithyhttp.RequestSendError{Err: context.Canceled})
	if errors.Is(err, store.ErrTransient) {
		t.Fatalf("wrapErr after the caller canceled = %v; must not be transient", err)
	}
	if s.wrapErr(ctx, "get", "k", nil) != nil {
		t.Fatal("wrapErr(nil) != nil")
	}
}

// TestWriteFailed checks the errors of conditional writes: S3 answers an
// If-Match write to a key with no object 404 NoSuchKey, which the caller
// must see as a failed condition, not as a missing file.
func TestWriteFailed(t *testing.T) {
	s := &Store{bucket: "bkt", endpoint: "http://127.0.0.1:1"}
	ctx := context.Background()
	w := &watch{parent: ctx, ctx: ctx}
	ifMatch := store.Condition{IfMatch: "abc"}
	ifNone := store.Condition{IfNoneMatch: true}
	tests := []struct {
		name string
		cond store.Condition
		err  error
		want error
		not  error
	}{
		{"412 If-None-Match", ifNone, apiError(412, "PreconditionFailed"), store.ErrPrecondition, nil},
		{"412 If-Match", ifMatch, apiError(412, "PreconditionFailed"), store.ErrPrecondition, nil},
		{"If-Match on no object", ifMatch, apiError(404, "NoSuchKey"), store.ErrPrecondition, store.ErrNotExist},
		{"If-Match, bare 404", ifMatch, apiError(404, ""), store.ErrPrecondition, store.ErrNotExist},
		{"If-Match, no upload", ifMatch, apiError(404, "NoSuchUpload"), store.ErrNoSuchUpload, store.ErrPrecondition},
		{"If-Match, no bucket", ifMatch, apiError(404, "NoSuchBucket"), ErrNoSuchBucket, store.ErrPrecondition},
		{"unconditional 404", store.Condition{}, apiError(404, "NoSuchKey"), store.ErrNotExist, store.ErrPrecondition},
		{"409 conflict", ifNone, apiError(409, "ConditionalRequestConflict"), store.ErrTransient, store.ErrPrecondition},
		{"501", ifNone, apiError(501, "NotImplemented"), store.ErrNotImplemented, store.ErrTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.writeFailed(w, "put", "k", tt.cond, tt.err)
			if !errors.Is(err, tt.want) || (tt.not != nil && errors.Is(err, tt.not)) {
				t.Fatalf("writeFailed = %v; want %v and not %v", err, tt.want, tt.not)
			}
			if !tt.cond.IsZero() && !strings.Contains(err.Error(), tt.cond.String()) {
				t.Fatalf("writeFailed = %q; does not name the condition %s", err, tt.cond)
			}
		})
	}
}

func TestCopySource(t *testing.T) {
	tests := []struct{ key, want string }{
		{"plain/key.txt", "b/plain/key.txt"},
		{"with space", "b/with%20space"},
		{"a+b", "b/a%2Bb"},
		{"100%", "b/100%25"},
		{"q?x#y", "b/q%3Fx%23y"},
		{"é", "b/%C3%A9"},
		{"~_-.", "b/~_-."},
	}
	for _, tt := range tests {
		if got := copySource("b", tt.key); got != tt.want {
			t.Errorf("copySource(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if dec, err := url.PathUnescape(strings.TrimPrefix(copySource("b", tt.key), "b/")); err != nil || dec != tt.key {
			t.Errorf("copySource(%q) does not decode back: %q, %v", tt.key, dec, err)
		}
	}
}

func TestRanges(t *testing.T) {
	tests := []struct {
		off, length int64
		get, part   string
	}{
		{0, 1, "bytes=0-0", "bytes=0-0"},
		{10, 20, "bytes=10-29", "bytes=10-29"},
		{5, -1, "bytes=5-", ""},
	}
	for _, tt := range tests {
		if got := byteRange(tt.off, tt.length); got != tt.get {
			t.Errorf("byteRange(%d, %d) = %q, want %q", tt.off, tt.length, got, tt.get)
		}
		if tt.part != "" {
			if got := partRange(tt.off, tt.length); got != tt.part {
				t.Errorf("partRange(%d, %d) = %q, want %q", tt.off, tt.length, got, tt.part)
			}
		}
	}
}

func TestNewOptions(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, 32)
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"no bucket", Options{}, false},
		{"plain", Options{Bucket: "b", AccessKey: "a", SecretKey: "s"}, true},
		{"sse-s3", Options{Bucket: "b", SSE: "AES256"}, true},
		{"kms key without kms", Options{Bucket: "b", SSE: "AES256", SSEKMSKeyID: "k"}, false},
		{"kms", Options{Bucket: "b", SSE: "aws:kms", SSEKMSKeyID: "k"}, true},
		{"sse-c", Options{Bucket: "b", SSECustomerKey: key}, true},
		{"sse-c short", Options{Bucket: "b", SSECustomerKey: key[:31]}, false},
		{"sse-c and sse", Options{Bucket: "b", SSE: "AES256", SSECustomerKey: key}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestMergePage(t *testing.T) {
	obj := func(k string) types.Object { return types.Object{Key: aws.String(k)} }
	pre := func(p string) types.CommonPrefix { return types.CommonPrefix{Prefix: aws.String(p)} }
	objects := []types.Object{obj("a"), obj("c"), obj("e")}
	prefixes := []types.CommonPrefix{pre("b/"), pre("d/")}
	tests := []struct {
		limit   int
		objects []string
		pres    []string
		last    string
		trimmed bool
	}{
		{0, []string{"a", "c", "e"}, []string{"b/", "d/"}, "e", false},
		{5, []string{"a", "c", "e"}, []string{"b/", "d/"}, "e", false},
		{1, []string{"a"}, nil, "a", true},
		{2, []string{"a"}, []string{"b/"}, "b/\U0010FFFF", true},
		{4, []string{"a", "c"}, []string{"b/", "d/"}, "d/\U0010FFFF", true},
	}
	for _, tt := range tests {
		page, last, trimmed := mergePage(objects, prefixes, tt.limit)
		var keys []string
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		if !slices.Equal(keys, tt.objects) || !slices.Equal(page.Prefixes, tt.pres) || last != tt.last || trimmed != tt.trimmed {
			t.Errorf("mergePage(limit %d) = %v %v %q %v, want %v %v %q %v",
				tt.limit, keys, page.Prefixes, last, trimmed, tt.objects, tt.pres, tt.last, tt.trimmed)
		}
	}
}
