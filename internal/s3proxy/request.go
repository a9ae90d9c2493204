package s3proxy

import (
	"crypto/md5"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// S3 operation names, as the S3 API reference spells them. Op infers them
// from the method, path and query of a path-style request.
const (
	OpListBuckets             = "ListBuckets"
	OpCreateBucket            = "CreateBucket"
	OpDeleteBucket            = "DeleteBucket"
	OpHeadBucket              = "HeadBucket"
	OpGetBucketLocation       = "GetBucketLocation"
	OpListObjects             = "ListObjects"
	OpListObjectsV2           = "ListObjectsV2"
	OpListMultipartUploads    = "ListMultipartUploads"
	OpDeleteObjects           = "DeleteObjects"
	OpPutObject               = "PutObject"
	OpCopyObject              = "CopyObject"
	OpGetObject               = "GetObject"
	OpHeadObject              = "HeadObject"
	OpDeleteObject            = "DeleteObject"
	OpCreateMultipartUpload   = "CreateMultipartUpload"
	OpUploadPart              = "UploadPart"
	OpUploadPartCopy          = "UploadPartCopy"
	OpCompleteMultipartUpload = "CompleteMultipartUpload"
	OpAbortMultipartUpload    = "AbortMultipartUpload"
	OpListParts               = "ListParts"
	OpUnknown                 = "Unknown"
)

// sseCustomerPrefix starts the SSE-C headers (algorithm, key, key MD5) and
// their copy-source variants.
const (
	sseCustomerPrefix     = "X-Amz-Server-Side-Encryption-Customer-"
	sseCopyCustomerPrefix = "X-Amz-Copy-Source-Server-Side-Encryption-Customer-"
)

// Request is the record of one request that passed through the proxy. The
// fault hook sees it before the body is read (BodySize, BodyMD5, Status and
// End are still zero); Requests returns copies taken at any later point.
type Request struct {
	Seq    int // 1-based arrival order
	Method string
	// Path is the request path exactly as sent (still escaped).
	Path string
	// Bucket and Key are decoded from a path-style Path.
	Bucket string
	Key    string
	// Query is the parsed query; the fields below lift out the ones tests
	// look at most.
	Query      url.Values
	UploadID   string
	PartNumber int  // 0 when absent
	Uploads    bool // the ?uploads sub-resource is present
	XID        string
	// Op is the S3 operation inferred from method, path, query and the
	// x-amz-copy-source header.
	Op string
	// Header holds the request headers as received (Host is in Host).
	Header     http.Header
	Host       string
	ContentMD5 string // the Content-MD5 header, base64; "" when absent
	// SSECustomer reports that at least one SSE-C header was present.
	SSECustomer bool
	// IfMatch and IfNoneMatch are the If-Match and If-None-Match headers
	// as received ("" when absent), the preconditions of a conditional
	// write; ConditionsStripped reports that SetStripConditions removed
	// them before forwarding.
	IfMatch            string
	IfNoneMatch        string
	ConditionsStripped bool
	// ContentLength is the declared length (-1 when unknown).
	ContentLength int64
	// BodySize and BodyMD5 cover the body bytes the proxy actually received.
	BodySize int64
	BodyMD5  [md5.Size]byte
	// Status is the status the client was sent; 0 when the connection was
	// dropped instead.
	Status int
	// Fault is the fault applied to this request (zero when forwarded).
	Fault Fault
	// Err describes a failure to forward or to relay the response.
	Err   string
	Start time.Time
	End   time.Time
}

// Done reports whether the request has finished (answered or dropped).
func (r *Request) Done() bool { return !r.End.IsZero() }

// ContentMD5Matches reports whether the Content-MD5 header is present and
// equals the MD5 of the body bytes received.
func (r *Request) ContentMD5Matches() bool {
	return r.ContentMD5 != "" && r.ContentMD5 == base64MD5(r.BodyMD5)
}

// newRequest builds the record of r as it arrives.
func newRequest(r *http.Request, seq int, start time.Time) *Request {
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if path == "" || !strings.HasPrefix(path, "/") {
		// Absolute-form request lines are not expected from S3 clients;
		// fall back to the parsed URL.
		path, rawQuery = r.URL.EscapedPath(), r.URL.RawQuery
	}
	q, _ := url.ParseQuery(rawQuery)
	rec := &Request{
		Seq:           seq,
		Method:        r.Method,
		Path:          path,
		Query:         q,
		UploadID:      q.Get("uploadId"),
		Uploads:       q.Has("uploads"),
		XID:           q.Get("x-id"),
		Header:        r.Header.Clone(),
		Host:          r.Host,
		ContentMD5:    r.Header.Get("Content-MD5"),
		IfMatch:       r.Header.Get("If-Match"),
		IfNoneMatch:   r.Header.Get("If-None-Match"),
		ContentLength: r.ContentLength,
		Start:         start,
	}
	if n, err := strconv.Atoi(q.Get("partNumber")); err == nil {
		rec.PartNumber = n
	}
	rec.Bucket, rec.Key = splitPath(path)
	for name := range r.Header {
		if strings.HasPrefix(name, sseCustomerPrefix) || strings.HasPrefix(name, sseCopyCustomerPrefix) {
			rec.SSECustomer = true
		}
	}
	rec.Op = inferOp(r.Method, rec.Bucket, rec.Key, q, r.Header.Get("X-Amz-Copy-Source") != "")
	return rec
}

// splitPath decodes a path-style request path into bucket and key.
func splitPath(escaped string) (bucket, key string) {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		p = escaped
	}
	p = strings.TrimPrefix(p, "/")
	bucket, key, _ = strings.Cut(p, "/")
	return bucket, key
}

// inferOp names the S3 operation of a path-style request.
func inferOp(method, bucket, key string, q url.Values, copySource bool) string {
	switch {
	case bucket == "":
		if method == http.MethodGet {
			return OpListBuckets
		}
		return OpUnknown
	case key == "":
		return bucketOp(method, q)
	default:
		return objectOp(method, q, copySource)
	}
}

func bucketOp(method string, q url.Values) string {
	switch method {
	case http.MethodPut:
		if len(q) == 0 {
			return OpCreateBucket
		}
	case http.MethodDelete:
		if len(q) == 0 {
			return OpDeleteBucket
		}
	case http.MethodHead:
		return OpHeadBucket
	case http.MethodPost:
		if q.Has("delete") {
			return OpDeleteObjects
		}
	case http.MethodGet:
		switch {
		case q.Has("uploads"):
			return OpListMultipartUploads
		case q.Has("location"):
			return OpGetBucketLocation
		case q.Get("list-type") == "2":
			return OpListObjectsV2
		case !hasSubresource(q):
			return OpListObjects
		}
	}
	return OpUnknown
}

func objectOp(method string, q url.Values, copySource bool) string {
	multipart := q.Has("uploadId")
	switch method {
	case http.MethodPut:
		switch {
		case multipart && q.Has("partNumber") && copySource:
			return OpUploadPartCopy
		case multipart && q.Has("partNumber"):
			return OpUploadPart
		case hasSubresource(q):
			return OpUnknown
		case copySource:
			return OpCopyObject
		default:
			return OpPutObject
		}
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			return OpCreateMultipartUpload
		case multipart:
			return OpCompleteMultipartUpload
		}
	case http.MethodDelete:
		switch {
		case multipart:
			return OpAbortMultipartUpload
		case !hasSubresource(q):
			return OpDeleteObject
		}
	case http.MethodGet:
		switch {
		case multipart:
			return OpListParts
		case !hasSubresource(q):
			return OpGetObject
		}
	case http.MethodHead:
		return OpHeadObject
	}
	return OpUnknown
}

// plainParams are query parameters that do not select a sub-resource: the
// SDK's x-id hint, listing and response-override parameters, and presigned
// request fields.
var plainParams = map[string]bool{
	"x-id": true, "list-type": true, "prefix": true, "delimiter": true,
	"continuation-token": true, "start-after": true, "max-keys": true,
	"encoding-type": true, "fetch-owner": true, "marker": true,
	"versionId": true, "partNumber": true,
}

// hasSubresource reports whether q names an S3 sub-resource (?acl,
// ?tagging, …) that this package does not model.
func hasSubresource(q url.Values) bool {
	for k := range q {
		if !plainParams[k] && !strings.HasPrefix(k, "response-") && !strings.HasPrefix(k, "X-Amz-") {
			return true
		}
	}
	return false
}
