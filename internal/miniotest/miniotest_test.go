package miniotest

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestServers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server func(t *testing.T) *Server
		scheme string
	}{
		{"shared", func(t *testing.T) *Server { return Shared(t) }, "http://"},
		{"own", func(t *testing.T) *Server { return Start(t) }, "http://"},
		{"tls", func(t *testing.T) *Server { return SharedWith(t, Options{TLS: true}) }, "https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.server(t)
			if !strings.HasPrefix(s.Endpoint, tc.scheme+"127.0.0.1:") {
				t.Fatalf("Endpoint = %q, want %s127.0.0.1:port", s.Endpoint, tc.scheme)
			}
			if (tc.scheme == "https://") != (s.CAFile != "") {
				t.Fatalf("CAFile = %q with endpoint %s", s.CAFile, s.Endpoint)
			}
			bucket := s.NewBucket(t)
			if other := s.NewBucket(t); other == bucket {
				t.Fatalf("NewBucket returned %q twice", bucket)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := s.Client(t)
			key := "dir/hello.txt"
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("hello")}); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
			if err != nil {
				t.Fatalf("GetObject: %v", err)
			}
			defer out.Body.Close()
			if b, _ := io.ReadAll(out.Body); string(b) != "hello" {
				t.Fatalf("GetObject body = %q, want hello", b)
			}
		})
	}
}

func TestSharedIsShared(t *testing.T) {
	if a, b := Shared(t), Shared(t); a != b {
		t.Fatalf("Shared returned two servers: %s and %s", a.Endpoint, b.Endpoint)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	t.Setenv("PARTFS_MINIO", "/nonexistent/minio")
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/minio") {
		t.Fatalf("Binary() error = %v, want one naming the missing path", err)
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"TestFoo/Sub_Case", "testfoo-sub-case"},
		{strings.Repeat("a", 100), strings.Repeat("a", 40)},
		{"__", ""},
	} {
		if got := sanitize(tc.in); got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
