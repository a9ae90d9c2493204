package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/partfs/partfs/store"
)

// codeSentinels maps S3 error codes onto store sentinels. Codes take
// precedence over HTTP status, which is used for the bodiless answers to
// HEAD requests.
var codeSentinels = map[string]error{
	"NoSuchKey":             store.ErrNotExist,
	"NotFound":              store.ErrNotExist,
	"PreconditionFailed":    store.ErrPrecondition,
	"NoSuchUpload":          store.ErrNoSuchUpload,
	"BadDigest":             store.ErrBadDigest,
	"EntityTooSmall":        store.ErrEntityTooSmall,
	"InvalidPart":           store.ErrInvalidPart,
	"InvalidPartOrder":      store.ErrInvalidPart,
	"EntityTooLarge":        store.ErrTooLarge,
	"AccessDenied":          store.ErrAccessDenied,
	"InvalidAccessKeyId":    store.ErrAccessDenied,
	"SignatureDoesNotMatch": store.ErrAccessDenied,
	"ExpiredToken":          store.ErrAccessDenied,
	"InvalidToken":          store.ErrAccessDenied,
	"AllAccessDisabled":     store.ErrAccessDenied,
	"SlowDown":              store.ErrTransient,
	"RequestTimeout":        store.ErrTransient,
	"InternalError":         store.ErrTransient,
	"ServiceUnavailable":    store.ErrTransient,
	"Throttling":            store.ErrTransient,
	"ThrottlingException":   store.ErrTransient,
	"RequestLimitExceeded":  store.ErrTransient,
	"TooManyRequests":       store.ErrTransient,
	"OperationAborted":      store.ErrTransient,

	// A conditional write raced another write of the key; S3 says to
	// retry it.
	"ConditionalRequestConflict": store.ErrTransient,
	// A header implies functionality the server lacks (501), such as
	// conditional writes on an older server: retrying cannot help.
	"NotImplemented": store.ErrNotImplemented,

	"KeyTooLongError": store.ErrKeyTooLong,
	// MinIO's answer for keys it cannot map onto its disks' file names;
	// partfs sends no empty, "." or ".." segments, so this is a segment
	// too long for them.
	"XMinioInvalidObjectName": store.ErrKeyTooLong,
}

// wrapErr wraps err from operation op on key with the matching store
// sentinel (if any) so that errors.Is works, keeping err in the chain.
func (s *Store) wrapErr(ctx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("s3 %s %q", op, key)
	if isCode(err, "NoSuchBucket") {
		return fmt.Errorf("%s: bucket %q does not exist at %s: %w: %w: %w",
			what, s.bucket, s.endpoint, ErrNoSuchBucket, store.ErrNotExist, err)
	}
	sentinel := classify(err)
	if sentinel == store.ErrTransient && ctx.Err() != nil {
		// The caller gave up; a retry would be pointless.
		sentinel = nil
	}
	if sentinel != nil {
		return fmt.Errorf("%s: %w: %w", what, sentinel, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// failed is wrapErr for a request made under watch w: a request its watch
// abandoned is transient, whatever error the SDK made of the cancellation.
func (s *Store) failed(w *watch, op, key string, err error) error {
	if err == nil {
		return nil
	}
	var stalled *stallError
	if errors.As(context.Cause(w.ctx), &stalled) && w.parent.Err() == nil {
		return fmt.Errorf("s3 %s %q: %w: %w (%w)", op, key, store.ErrTransient, stalled, err)
	}
	return s.wrapErr(w.parent, op, key, err)
}

// classify returns the store sentinel for err, or nil.
func classify(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if s, ok := codeSentinels[apiErr.ErrorCode()]; ok {
			return s
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		switch status := respErr.HTTPStatusCode(); {
		case status == http.StatusNotFound:
			return store.ErrNotExist
		case status == http.StatusPreconditionFailed:
			return store.ErrPrecondition
		case status == http.StatusForbidden:
			return store.ErrAccessDenied
		case status == http.StatusNotImplemented:
			return store.ErrNotImplemented
		case status == http.StatusTooManyRequests, status >= 500:
			return store.ErrTransient
		case status >= 300:
			// A definite answer from the server; the network is fine.
			return nil
		}
	}
	if isNetworkFailure(err) {
		return store.ErrTransient
	}
	return nil
}

// isNetworkFailure reports whether err is a failure to exchange bytes with
// the endpoint (refused, reset, cut short, timed out) rather than a
// configuration error such as an untrusted certificate.
func isNetworkFailure(err error) bool {
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	if errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var netErr net.Error
	var opErr *net.OpError
	var sendErr *smithyhttp.RequestSendError
	var timeoutErr *awshttp.ResponseTimeoutError
	return errors.As(err, &netErr) || errors.As(err, &opErr) ||
		errors.As(err, &sendErr) || errors.As(err, &timeoutErr)
}

func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

func httpStatus(err error) int {
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}
