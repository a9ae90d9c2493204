// Package s3 implements store.Store on aws-sdk-go-v2, against AWS S3 or any
// S3-compatible endpoint such as MinIO. It is the only package of partfs that
// imports the SDK.
//
// # Requests
//
// The SDK's own retries are off: partfs retries with store.WithRetry, which
// re-sends exactly the same bytes, and a retry hidden inside the SDK would
// multiply its attempts and delays. The SDK's default CRC checksums are off
// too: every Put and UploadPart carries Content-MD5, which the server checks
// and which SigV4 signs, so the body cannot change unnoticed. Bodies are sent
// as UNSIGNED-PAYLOAD by default (see Options.SignPayload for the measured
// cost of the alternative).
//
// # HTTP client
//
// The transport is tuned only through the SDK's BuildableClient: when
// AWS_CA_BUNDLE or Options.CABundle names a CA bundle, the SDK refuses any
// other client.
//
// # Stalled connections
//
// Every request is watched (watch.go): a connection on which no byte moves
// for Options.IOTimeout, while the body is sent, while an ordinary answer is
// awaited or while a reader waits for GET body bytes, is closed and the
// request fails with store.ErrTransient, which store.WithRetry retries (a
// GET body from the first byte not yet read). A server that accepts a
// connection and never reads the body is caught the same way.
//
// # Errors
//
// Failures are wrapped with the operation and key and mapped onto the store
// sentinels (store.ErrNotExist, store.ErrPrecondition, store.ErrTransient, …)
// so callers use errors.Is; the SDK error stays in the chain for errors.As.
// SSE-C keys and credentials never appear in errors or logs.
//
// Conditional writes (store.Condition) fail with store.ErrPrecondition when
// the condition does not hold, which S3 answers 412, or 404 NoSuchKey for
// If-Match on a key with no object. A 409 ConditionalRequestConflict, a race
// with another conditional write that S3 says to retry, is
// store.ErrTransient. A 501 NotImplemented, the answer of a server without
// the feature, is store.ErrNotImplemented and never retried.
package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/partfs/partfs/store"
)

// Options configures a Store. Zero values get defaults in New.
type Options struct {
	// Bucket is the bucket every key lives in. Required.
	Bucket string
	// Endpoint is the S3 endpoint URL, e.g. "http://127.0.0.1:9000"; empty
	// means AWS's endpoint for Region. Without a scheme, https is assumed.
	Endpoint string
	// Region is the signing region. Empty takes the region from the AWS
	// configuration (AWS_REGION, the profile), and failing that us-east-1.
	Region string
	// Profile selects a profile of the shared AWS config and credentials
	// files; empty uses AWS_PROFILE or "default".
	Profile string
	// PathStyle addresses buckets as endpoint/bucket/key instead of
	// bucket.endpoint/key, as most self-hosted servers need.
	PathStyle bool
	// CABundle is the path of a PEM file of extra certificate authorities
	// to trust, for endpoints with a private CA.
	CABundle string
	// AccessKey and SecretKey (and optionally SessionToken) are static
	// credentials. When AccessKey is empty the standard AWS chain is used:
	// environment, shared config and credentials files (Profile), then the
	// EC2 instance metadata service.
	AccessKey    string
	SecretKey    string
	SessionToken string

	// MaxConns caps the connections to the endpoint and is also the number
	// kept idle for reuse; default 64.
	MaxConns int
	// ConnectTimeout bounds dialing and the TLS handshake; default 5s.
	ConnectTimeout time.Duration
	// IOTimeout is how long a request may go without a byte moving, in
	// either direction, before its connection is closed and the request
	// fails as transient (store.WithRetry then retries it): while sending
	// the body (a server that accepts the connection and never reads), while
	// waiting for the answer to an ordinary request, and while a reader
	// waits for the next bytes of a GET body. Default 30s: a busy server
	// answers an ordinary request, or sends the next bytes of a body, well
	// within it, and a dead connection costs a small share of the retry
	// budget.
	IOTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the answer to the requests
	// a server may think about for a while (CompleteMultipart of many
	// parts, UploadPartCopy and CopyObject of gigabytes); default 2m.
	ResponseHeaderTimeout time.Duration
	// CheckTimeout bounds CheckBucket as a whole; default 10s.
	CheckTimeout time.Duration

	// SignPayload signs the SHA-256 of every Put and UploadPart body instead
	// of sending UNSIGNED-PAYLOAD. It is off by default: hashing costs CPU on
	// every byte sent and delays the request until the whole body has been
	// read once, while adding no integrity that the signed Content-MD5
	// header does not already give (the server rejects a body whose MD5
	// differs: BadDigest). MinIO accepts UNSIGNED-PAYLOAD over plain HTTP
	// as well as HTTPS. Measured with BenchmarkUploadPart64MiB (one 64 MiB
	// UploadPart to a local MinIO over HTTP, 2-core Xeon with SHA-NI):
	// client CPU 30-33 ms unsigned against 81-89 ms signed, so signing
	// costs about 55 ms of CPU per 64 MiB (~2.7x the client's CPU per
	// byte), and wall time went from ~0.20 s to ~0.35 s per part.
	SignPayload bool

	// SSE asks for server-side encryption with S3-managed keys ("AES256")
	// or KMS ("aws:kms", with SSEKMSKeyID). Empty uses the bucket default.
	SSE         string
	SSEKMSKeyID string
	// SSECustomerKey is a 32-byte key for SSE-C. Every request that reads
	// or writes object data then carries it; S3 accepts it over HTTPS only.
	// It is never logged.
	SSECustomerKey []byte

	// Logger receives the SDK's warnings; nil discards.
	Logger *slog.Logger
}

// Errors that describe the bucket or endpoint as a whole, from CheckBucket
// (and, for ErrNoSuchBucket, any request). They are wrapped together with
// the store sentinels.
var (
	// ErrNoSuchBucket: the bucket does not exist (also store.ErrNotExist).
	ErrNoSuchBucket = errors.New("s3: bucket does not exist")
	// ErrUnreachable: no connection could be made to the endpoint.
	ErrUnreachable = errors.New("s3: cannot reach endpoint")
	// ErrWrongRegion: the bucket lives in another region than the one
	// requests are signed for.
	ErrWrongRegion = errors.New("s3: bucket is in another region")
)

// Store is a store.Store backed by one S3 bucket. It is safe for
// concurrent use.
type Store struct {
	client   *s3.Client
	bucket   string
	endpoint string // for messages
	opts     Options
	log      *slog.Logger
	sse      sse
	// bodyOpts swaps payload hashing for UNSIGNED-PAYLOAD on requests with
	// a body, unless Options.SignPayload.
	bodyOpts []func(*s3.Options)
}

var _ store.Store = (*Store)(nil)

// New configures a client for opts.Bucket. It sends no request; call
// CheckBucket to find out early whether the bucket can be used.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	applyDefaults(&opts)
	if opts.Endpoint != "" && !strings.Contains(opts.Endpoint, "://") {
		opts.Endpoint = "https://" + opts.Endpoint
	}
	keys, err := newSSE(opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := loadConfig(ctx, opts, log)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Retryer = aws.NopRetryer{}
	})
	s := &Store{
		client:   client,
		bucket:   opts.Bucket,
		endpoint: opts.Endpoint,
		opts:     opts,
		log:      log,
		sse:      keys,
	}
	if s.endpoint == "" {
		s.endpoint = "AWS S3 (" + cfg.Region + ")"
	}
	if !opts.SignPayload {
		s.bodyOpts = []func(*s3.Options){s3.WithAPIOptions(unsignedPayload)}
	}
	return s, nil
}

func applyDefaults(opts *Options) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 64
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.IOTimeout <= 0 {
		opts.IOTimeout = 30 * time.Second
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = 2 * time.Minute
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 10 * time.Second
	}
}

// loadConfig resolves region and credentials through the standard AWS chain,
// with static credentials and a CA bundle from opts taking precedence.
func loadConfig(ctx context.Context, opts Options, log *slog.Logger) (aws.Config, error) {
	loaders := []func(*config.LoadOptions) error{
		config.WithHTTPClient(newHTTPClient(opts)),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithLogger(sdkLogger{log}),
		config.WithClientLogMode(0),
	}
	if opts.Region != "" {
		loaders = append(loaders, config.WithRegion(opts.Region))
	}
	if opts.Profile != "" {
		loaders = append(loaders, config.WithSharedConfigProfile(opts.Profile))
	}
	if opts.AccessKey != "" {
		loaders = append(loaders, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, opts.SessionToken)))
	}
	if opts.CABundle != "" {
		pem, err := os.ReadFile(opts.CABundle)
		if err != nil {
			return aws.Config{}, fmt.Errorf("s3: CA bundle: %w", err)
		}
		loaders = append(loaders, config.WithCustomCABundle(strings.NewReader(string(pem))))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return cfg, nil
}

// newHTTPClient tunes the SDK's own client; see the package comment for why
// it must stay a BuildableClient.
func newHTTPClient(opts Options) *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = opts.ConnectTimeout
		}).
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxConnsPerHost = opts.MaxConns
			tr.MaxIdleConnsPerHost = opts.MaxConns
			tr.MaxIdleConns = opts.MaxConns
			tr.TLSHandshakeTimeout = opts.ConnectTimeout
			// A backstop behind each request's watch (watch.go).
			tr.ResponseHeaderTimeout = max(opts.ResponseHeaderTimeout, opts.IOTimeout) + opts.IOTimeout
			tr.ExpectContinueTimeout = time.Second
			// Ranged reads must see the stored bytes, never a
			// transparently decompressed body.
			tr.DisableCompression = true
			// With the default 4 KiB buffers a part goes out in 4 KiB
			// write(2) calls: sending 1 GiB cost a fifth of partfs's CPU
			// in syscalls and copies. 256 KiB per direction and
			// connection keeps that small.
			tr.WriteBufferSize = 256 << 10
			tr.ReadBufferSize = 256 << 10
		})
}

// sdkLogger forwards the SDK's log lines to slog.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "s3 sdk: "+fmt.Sprintf(format, v...))
}

// sse holds the encryption headers, precomputed once.
type sse struct {
	mode     string // Options.SSE
	kmsKeyID string
	// SSE-C: the key and its MD5, base64 as the headers want them.
	customerKey    string
	customerKeyMD5 string
}

func newSSE(opts Options) (sse, error) {
	s := sse{mode: opts.SSE, kmsKeyID: opts.SSEKMSKeyID}
	if opts.SSEKMSKeyID != "" && !strings.HasPrefix(opts.SSE, "aws:kms") {
		return sse{}, errors.New("s3: an SSE KMS key ID needs SSE aws:kms")
	}
	if len(opts.SSECustomerKey) == 0 {
		return s, nil
	}
	if opts.SSE != "" {
		return sse{}, errors.New("s3: SSE-C cannot be combined with SSE " + opts.SSE)
	}
	if len(opts.SSECustomerKey) != 32 {
		// The length only: the key itself never goes into an error.
		return sse{}, fmt.Errorf("s3: SSE-C key must be 32 bytes, got %d", len(opts.SSECustomerKey))
	}
	sum := md5.Sum(opts.SSECustomerKey)
	s.customerKey = base64.StdEncoding.EncodeToString(opts.SSECustomerKey)
	s.customerKeyMD5 = base64.StdEncoding.EncodeToString(sum[:])
	return s, nil
}

// customer returns the SSE-C algorithm, key and key MD5 headers, or nils.
func (s sse) customer() (alg, key, keyMD5 *string) {
	if s.customerKey == "" {
		return nil, nil, nil
	}
	return aws.String("AES256"), aws.String(s.customerKey), aws.String(s.customerKeyMD5)
}

// server returns the SSE-S3 / SSE-KMS headers, or zero values.
func (s sse) server() (types.ServerSideEncryption, *string) {
	if s.mode == "" {
		return "", nil
	}
	var keyID *string
	if s.kmsKeyID != "" {
		keyID = aws.String(s.kmsKeyID)
	}
	return types.ServerSideEncryption(s.mode), keyID
}
