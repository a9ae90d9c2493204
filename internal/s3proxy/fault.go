package s3proxy

import (
	"fmt"
	"net/http"
	"time"
)

// FaultKind selects what the proxy does instead of (or around) forwarding.
type FaultKind int

const (
	// FaultNone forwards the request (after Delay, if set).
	FaultNone FaultKind = iota
	// FaultStatus reads the request body and answers with Status and Body
	// without contacting the server.
	FaultStatus
	// FaultDrop reads DropAfter bytes of the request body (all of it when
	// DropAfter < 0), then closes the connection without an answer, as a
	// crashed server or a broken network would.
	FaultDrop
	// FaultDropResponse forwards the request, so the server acts on it, then
	// closes the connection instead of relaying the answer: the client cannot
	// tell whether the request took effect.
	FaultDropResponse
	// FaultCutResponse forwards the request and relays the answer's status,
	// headers and the first After bytes of its body, then closes the
	// connection: a body cut in the middle, short of its Content-Length.
	FaultCutResponse
	// FaultStallResponse forwards the request and relays the status, headers
	// and the first After bytes of the body, then sends nothing more while
	// keeping the connection open, for Hold (until the client hangs up or
	// the proxy closes when Hold is 0); then it closes the connection.
	FaultStallResponse
	// FaultBlackhole neither reads the request body nor answers: the
	// connection stays open, silent, for Hold (0: until the proxy closes),
	// as a server that accepted the connection and then died. The server
	// never sees the request.
	FaultBlackhole
)

func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case FaultStatus:
		return "status"
	case FaultDrop:
		return "drop"
	case FaultDropResponse:
		return "drop-response"
	case FaultCutResponse:
		return "cut-response"
	case FaultStallResponse:
		return "stall-response"
	case FaultBlackhole:
		return "blackhole"
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Fault is what the fault hook asks the proxy to do with one request. The
// zero Fault forwards the request untouched.
type Fault struct {
	Kind FaultKind
	// Delay is waited before anything else happens (cut short when the
	// client gives up).
	Delay time.Duration
	// Status and Body are the answer of a FaultStatus; Header is added to it.
	Status int
	Header http.Header
	Body   []byte
	// DropAfter is how many request body bytes a FaultDrop reads first.
	DropAfter int64
	// After is how many response body bytes a FaultCutResponse or
	// FaultStallResponse relays first.
	After int64
	// Hold is how long a FaultStallResponse or FaultBlackhole keeps the
	// connection silent; 0 means until the client hangs up (stall) or the
	// proxy closes.
	Hold time.Duration
}

// FaultFunc decides the fault for a request. It is called once per request,
// before its body is read, from the request's own goroutine: it must be safe
// for concurrent use.
type FaultFunc func(r *Request) Fault

// Error returns a FaultStatus answering with an S3 XML error body, as S3
// itself would send it.
func Error(status int, code, message string) Fault {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"+
		"<Error><Code>%s</Code><Message>%s</Message><RequestId>s3proxy</RequestId></Error>", code, message)
	return Fault{
		Kind:   FaultStatus,
		Status: status,
		Header: http.Header{"Content-Type": {"application/xml"}},
		Body:   []byte(body),
	}
}

// SlowDown is S3's 503 throttling answer.
func SlowDown() Fault {
	return Error(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
}

// InternalError is S3's 500 answer.
func InternalError() Fault {
	return Error(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
}

// Drop closes the connection after reading after bytes of the request body
// (after < 0: the whole body).
func Drop(after int64) Fault { return Fault{Kind: FaultDrop, DropAfter: after} }

// DropResponse lets the server act on the request and then closes the
// connection instead of relaying the answer.
func DropResponse() Fault { return Fault{Kind: FaultDropResponse} }

// Delay forwards the request after d.
func Delay(d time.Duration) Fault { return Fault{Delay: d} }

// CutResponse relays the answer up to after bytes of its body and then
// closes the connection.
func CutResponse(after int64) Fault { return Fault{Kind: FaultCutResponse, After: after} }

// StallResponse relays the answer up to after bytes of its body and then
// sends nothing more, keeping the connection open for hold (0: until the
// client hangs up).
func StallResponse(after int64, hold time.Duration) Fault {
	return Fault{Kind: FaultStallResponse, After: after, Hold: hold}
}

// Blackhole accepts the request and never reads nor answers it, for hold
// (0: until the proxy closes).
func Blackhole(hold time.Duration) Fault { return Fault{Kind: FaultBlackhole, Hold: hold} }
