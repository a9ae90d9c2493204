// Package miniotest runs a real MinIO server for tests.
//
// # Finding the binary
//
// The server binary is $PARTFS_MINIO when that is set, and otherwise
// .bin/minio in the module root (the directory holding go.mod, found by
// walking up from the test's working directory). `make test` installs it
// there at a pinned version. A missing binary fails the test: tests that need
// S3 never skip silently.
//
// # One server per test or per package
//
// Start gives a test its own server, stopped by t.Cleanup. A package whose
// tests share one server calls Main from TestMain and Shared (or SharedWith)
// from each test; the server starts on first use and stops when m.Run
// returns. Either way each test should take a fresh bucket from NewBucket.
//
// # TLS
//
// With Options.TLS the server listens on https with a self-signed
// certificate for 127.0.0.1, whose PEM is at Server.CAFile; clients must be
// told to trust it (for example through AWS_CA_BUNDLE or a CA bundle option).
//
// Servers listen on 127.0.0.1 only and keep their data in a temporary
// directory that is removed when they stop.
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials and region every server is started with.
const (
	AccessKey = "partfs-test"
	SecretKey = "partfs-test-secret"
	Region    = "us-east-1"
)

// startTimeout bounds how long a server may take to answer its health check.
const startTimeout = 30 * time.Second

// Options choose how a server is started. The zero value is plain HTTP.
type Options struct {
	// TLS serves https with a self-signed certificate for 127.0.0.1.
	TLS bool
	// KMS gives the server a static KMS key named KMSKeyName
	// (MINIO_KMS_SECRET_KEY), which server-side encryption with S3-managed
	// keys (AES256) and aws:kms with that key ID need.
	KMS bool
}

// KMSKeyName is the KMS key of a server started with Options.KMS.
const KMSKeyName = "partfs-test-key"

// kmsSecretKey is the static KMS key: "name:base64 of 32 bytes". It protects
// test data only.
const kmsSecretKey = KMSKeyName + ":cGFydGZzLXRlc3Qta21zLWtleS0zMi1ieXRlcyEhISE="

// Server is a running MinIO server.
type Server struct {
	Endpoint  string // "http://127.0.0.1:port" or "https://…" with TLS
	AccessKey string
	SecretKey string
	Region    string
	// CAFile is the PEM of the certificate the server presents; empty
	// without TLS.
	CAFile string

	dir     string // temporary root: data, certs, log
	logPath string
	bin     string
	args    []string
	env     []string
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait returns
	http    *http.Client  // trusts CAFile

	mu     sync.Mutex
	client *s3.Client // guarded by mu; built on first use
}

// Start starts a server for this test and stops it when the test ends.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// Binary returns the path of the MinIO binary: $PARTFS_MINIO, or .bin/minio
// in the module root above the working directory.
func Binary() (string, error) {
	if p := os.Getenv("PARTFS_MINIO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("minio not found at %s (from $PARTFS_MINIO): %w", p, err)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".bin", "minio")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("minio not found at %s; run `make test`, which installs it", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("minio not found: no go.mod above %s; set $PARTFS_MINIO or run `make test`, which installs it", wd)
		}
		dir = parent
	}
}

// start launches a server, retrying a few times because a port picked as
// free may be taken by someone else before MinIO binds it.
func start(o Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		s, err := launch(bin, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launch(bin string, o Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "partfs-minio-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		AccessKey: AccessKey,
		SecretKey: SecretKey,
		Region:    Region,
		dir:       dir,
		logPath:   filepath.Join(dir, "minio.log"),
		http:      &http.Client{Timeout: 2 * time.Second},
	}
	fail := func(err error) (*Server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return fail(err)
	}
	scheme := "http"
	certsDir := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certsDir, 0o700); err != nil {
		return fail(err)
	}
	if o.TLS {
		scheme = "https"
		ca, err := writeCert(certsDir)
		if err != nil {
			return fail(err)
		}
		s.CAFile = ca
		pool, err := certPool(ca)
		if err != nil {
			return fail(err)
		}
		s.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[0])

	logFile, err := os.Create(s.logPath)
	if err != nil {
		return fail(err)
	}
	logFile.Close()
	s.bin = bin
	s.args = []string{"server",
		"--address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--certs-dir", certsDir,
		"--quiet",
		filepath.Join(dir, "data")}
	s.env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey,
		"MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_SITE_REGION="+Region,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CALLHOME_ENABLE=off",
		"MINIO_CI=off",
	)
	if o.KMS {
		s.env = append(s.env, "MINIO_KMS_SECRET_KEY="+kmsSecretKey)
	}
	if err := s.run(); err != nil {
		return fail(err)
	}
	if err := s.waitLive(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// run starts the server process, its output appended to the log.
func (s *Server) run() error {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Env = s.env
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	setProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() {
		cmd.Wait()
		close(done)
	}()
	return nil
}

// Restart kills the server (SIGKILL, as a crash would) and starts it again
// on the same address with the same data, after down. It returns once the
// server answers again. Only servers of Start may be restarted, never
// shared ones.
func (s *Server) Restart(down time.Duration) error {
	s.cmd.Process.Kill()
	<-s.done
	time.Sleep(down)
	if err := s.run(); err != nil {
		return err
	}
	return s.waitLive()
}

// waitLive polls the liveness endpoint until it answers 200, the process
// exits, or startTimeout passes.
func (s *Server) waitLive() error {
	deadline := time.Now().Add(startTimeout)
	url := s.Endpoint + "/minio/health/live"
	for {
		resp, err := s.http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("minio exited before becoming ready (%v); output:\n%s", s.cmd.ProcessState, s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minio at %s not ready after %v (last: %v); output:\n%s", s.Endpoint, startTimeout, err, s.logTail())
		}
	}
}

// stop kills the server by PID, waits for it and removes its data.
func (s *Server) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// logTail returns the last few KiB of the server's output.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// Client returns an S3 client for the server, independent of any code under
// test, for setting up and checking buckets.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client
	}
	hc := awshttp.NewBuildableClient()
	if s.CAFile != "" {
		pool, err := certPool(s.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		hc = hc.WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		})
	}
	s.client = s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   hc,
	})
	return s.client
}

// NewBucket creates a bucket with a unique name and returns the name. The
// bucket is left in place: the server's data goes away when it stops.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "partfs-" + sanitize(t.Name()) + "-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client(t).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", name, s.Endpoint, err)
	}
	return name
}

// sanitize turns a test name into a bucket-name fragment: lower-case
// letters, digits and hyphens, at most 40 characters.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func certPool(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("miniotest: no certificate in " + caFile)
	}
	return pool, nil
}
