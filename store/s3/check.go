package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/store"
)

// CheckBucket asks the server whether the bucket exists and the credentials
// may use it (HeadBucket), within Options.CheckTimeout, so that a mount can
// fail at once with a message a person can act on. The error wraps, besides
// the SDK's:
//   - ErrNoSuchBucket and store.ErrNotExist when the bucket is missing;
//   - store.ErrAccessDenied when the credentials are rejected;
//   - ErrUnreachable when no connection could be made to the endpoint;
//   - ErrWrongRegion when the bucket lives in another region.
func (s *Store) CheckBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
	defer cancel()
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err == nil {
		return nil
	}
	status := httpStatus(err)
	switch {
	case status == http.StatusNotFound || isCode(err, "NoSuchBucket"):
		return fmt.Errorf("bucket %q does not exist at %s: %w: %w: %w", s.bucket, s.endpoint, ErrNoSuchBucket, store.ErrNotExist, err)
	case status == http.StatusForbidden || errors.Is(classify(err), store.ErrAccessDenied):
		return fmt.Errorf("access denied to bucket %q at %s: check credentials and permissions: %w: %w", s.bucket, s.endpoint, store.ErrAccessDenied, err)
	case status == http.StatusMovedPermanently || isCode(err, "PermanentRedirect") || isCode(err, "AuthorizationHeaderMalformed"):
		return fmt.Errorf("bucket %q is not in region %s: set the bucket's region: %w: %w", s.bucket, s.client.Options().Region, ErrWrongRegion, err)
	case status == 0 && (isNetworkFailure(err) || errors.Is(err, context.DeadlineExceeded)):
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			return fmt.Errorf("check bucket %q: %w", s.bucket, err) // canceled by the caller
		}
		return fmt.Errorf("cannot reach endpoint %s (bucket %q): %w: %w", s.endpoint, s.bucket, ErrUnreachable, err)
	}
	return s.wrapErr(ctx, "check bucket", s.bucket, err)
}
