// Package s3proxy is a recording, fault-injecting HTTP proxy that tests put
// between partfs and an S3 server (MinIO).
//
// # What it records
//
// Every request becomes a Request: method, path, the bucket and key decoded
// from a path-style path, the query (uploadId, partNumber, uploads, x-id), the
// S3 operation inferred from them, the headers (Content-MD5, If-Match,
// If-None-Match and any SSE-C header among them), the size and MD5 of the
// body bytes as received, the status sent back, and start and end times.
// Requests returns snapshots, so a test can look at requests still in
// flight (for instance parts that arrive while the writer is still
// writing).
//
// # Faults
//
// SetFault installs a hook that sees each request before its body is read and
// may answer with a status (SlowDown, InternalError, any S3 error), drop the
// connection before or in the middle of the body, drop the answer after the
// server acted, cut or stall the answer's body after some bytes, hold the
// request without reading or answering it (a blackhole), or delay it. Down
// and Up take the proxy off the network and back, as a server that is
// restarted: while down, connections are refused and those open are
// closed.
//
// # Signatures
//
// The proxy forwards the request line and the Host header byte for byte, so
// SigV4 signatures made for the proxy's address stay valid at the server: the
// client signs the Host it talks to, and the server checks the signature
// against the Host it receives without comparing it with its own address.
// Bodies are streamed (hashed on the way through), never buffered whole.
//
// The one exception is SetStripConditions, which changes signed headers:
// the proxy then signs those requests again, with Options.SecretKey.
//
// Only path-style requests (http://host/bucket/key) are decoded; partfs uses
// path style whenever an endpoint is given.
//
// # Servers without conditional writes
//
// SetRejectConditions and SetStripConditions make the server behind the
// proxy look like one without conditional writes. Both act on PutObject,
// CreateMultipartUpload, CompleteMultipartUpload and DeleteObject requests
// that carry If-Match or If-None-Match (never on GET, HEAD or the
// x-amz-copy-source-if-* headers of copies). Reject answers them 501
// NotImplemented, as a server that refuses the headers does; strip removes
// the two headers and forwards the request, as if the server ignored them.
// Since SigV4 signs every header the client sent, stripping needs the
// secret key the client signs with (Options.SecretKey) to sign the changed
// request again; the proxy refuses a request it cannot re-sign (one signed
// in the query string, a chunk-signed body) with 400 rather than forward it
// unchanged. Request.IfMatch and Request.IfNoneMatch record the headers as
// received either way.
package s3proxy

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configures a Proxy.
type Options struct {
	// Target is the server's base URL, e.g. "http://127.0.0.1:9000".
	Target string
	// Listen is the address to listen on; default "127.0.0.1:0".
	Listen string
	// Logger receives one debug line per request; nil discards.
	Logger *slog.Logger
	// SecretKey is the secret of the access key clients sign with. It is
	// needed only to sign again the requests that SetStripConditions
	// changes.
	SecretKey string
}

// Proxy is a running recording proxy. Its methods are safe for concurrent use.
type Proxy struct {
	target    *url.URL
	listener  net.Listener
	server    *http.Server
	transport *http.Transport
	log       *slog.Logger
	secret    string

	mu       sync.Mutex
	addr     string                // guarded by mu; the address listened on
	down     bool                  // guarded by mu
	gone     chan struct{}         // guarded by mu; closed when the proxy goes down or closes
	conns    map[net.Conn]struct{} // guarded by mu; the client connections open
	fault    FaultFunc             // guarded by mu
	reject   bool                  // guarded by mu; SetRejectConditions
	strip    bool                  // guarded by mu; SetStripConditions
	requests []*Request            // guarded by mu; records are updated in place under mu
	seq      int                   // guarded by mu
}

// New starts a proxy in front of opts.Target.
func New(opts Options) (*Proxy, error) {
	target, err := url.Parse(opts.Target)
	if err != nil || target.Host == "" || (target.Scheme != "http" && target.Scheme != "https") {
		return nil, fmt.Errorf("s3proxy: target %q is not an http(s) URL", opts.Target)
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("s3proxy: listen: %w", err)
	}
	p := &Proxy{
		target:   target,
		listener: ln,
		log:      log,
		secret:   opts.SecretKey,
		addr:     ln.Addr().String(),
		gone:     make(chan struct{}),
		conns:    make(map[net.Conn]struct{}),
		transport: &http.Transport{
			Proxy:                 nil, // always straight to the target
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:          128,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       30 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Relay bodies exactly as the server encodes them.
			DisableCompression: true,
		},
	}
	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         p.track,
	}
	go p.server.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return p, nil
}

// Start starts a proxy in front of target for the duration of a test.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return StartWith(tb, Options{Target: target})
}

// StartWith starts a proxy with opts for the duration of a test.
func StartWith(tb testing.TB, opts Options) *Proxy {
	tb.Helper()
	p, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// URL is the proxy's base URL, to be given to the client as its endpoint.
func (p *Proxy) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.down {
		close(p.gone)
		p.down = true
	}
	p.mu.Unlock()
	err := p.server.Close()
	p.transport.CloseIdleConnections()
	return err
}

// track keeps the set of open client connections for Down.
func (p *Proxy) track(c net.Conn, state http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch state {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
	}
}

// Down stops listening, so that new connections are refused, and closes
// every open connection, ending the requests in flight (held ones too).
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return
	}
	p.down = true
	close(p.gone)
	p.listener.Close()
	for c := range p.conns {
		c.Close()
	}
	p.transport.CloseIdleConnections()
}

// Up listens again, on the same address, after Down.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.down {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("s3proxy: listen again on %s: %w", p.addr, err)
	}
	p.listener, p.down, p.gone = ln, false, make(chan struct{})
	go p.server.Serve(ln) //nolint:errcheck // returns when the listener closes
	return nil
}

// goneCh returns the channel closed when the proxy next goes down.
func (p *Proxy) goneCh() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gone
}

// SetFault installs f (nil: forward everything) for requests arriving from
// now on.
func (p *Proxy) SetFault(f FaultFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// SetRejectConditions makes the proxy answer conditional writes and deletes
// arriving from now on with 501 NotImplemented, without forwarding them, as
// a server without conditional writes that refuses the headers does. It
// applies where the fault hook asks for no fault, and wins over
// SetStripConditions.
func (p *Proxy) SetRejectConditions(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reject = on
}

// SetStripConditions makes the proxy remove If-Match and If-None-Match from
// conditional writes and deletes arriving from now on and forward them
// signed again, so that the server acts as one that ignores conditions. It
// panics when the proxy was given no Options.SecretKey to sign with.
func (p *Proxy) SetStripConditions(on bool) {
	if on && p.secret == "" {
		panic("s3proxy: SetStripConditions needs Options.SecretKey to sign the requests it changes")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strip = on
}

// Requests returns a snapshot of every request recorded so far, in arrival
// order, including those still in flight.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.requests))
	for i, r := range p.requests {
		out[i] = *r
	}
	return out
}

// Ops returns the recorded requests whose Op is one of ops, in arrival order.
func (p *Proxy) Ops(ops ...string) []Request {
	var out []Request
	for _, r := range p.Requests() {
		for _, op := range ops {
			if r.Op == op {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// Reset forgets the requests recorded so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = nil
}

// WaitFor polls the recorded requests until cond holds or ctx ends.
func (p *Proxy) WaitFor(ctx context.Context, cond func([]Request) bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(p.Requests()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("s3proxy: condition not met: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// WaitIdle waits until every recorded request has finished. A client can
// see the answer to its request (or the dropped connection) a moment before
// the proxy completes that request's record, so tests call WaitIdle before
// they look at statuses and body sums.
func (p *Proxy) WaitIdle(ctx context.Context) error {
	return p.WaitFor(ctx, func(rs []Request) bool {
		for _, r := range rs {
			if !r.Done() {
				return false
			}
		}
		return true
	})
}

// ServeHTTP records r, applies the fault hook's decision and forwards.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec, fault := p.begin(r)
	body := &hashingReader{r: r.Body, h: md5.New()}
	fault = p.conditions(r, rec, fault)
	status, errText := p.serve(w, r, body, fault)
	p.finish(rec, body, status, errText)
}

// conditionalOps are the requests whose If-Match and If-None-Match
// SetRejectConditions and SetStripConditions act on.
var conditionalOps = map[string]bool{
	OpPutObject: true, OpCreateMultipartUpload: true, OpCompleteMultipartUpload: true, OpDeleteObject: true,
}

// conditions applies SetRejectConditions and SetStripConditions to r and
// returns the fault to carry out.
func (p *Proxy) conditions(r *http.Request, rec *Request, f Fault) Fault {
	p.mu.Lock()
	reject, strip := p.reject, p.strip
	op, conditional := rec.Op, rec.IfMatch != "" || rec.IfNoneMatch != ""
	p.mu.Unlock()
	if !conditional || !conditionalOps[op] || f.Kind != FaultNone || (!reject && !strip) {
		return f
	}
	if reject {
		f = Error(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented")
	} else if err := resign(r, p.secret, "If-Match", "If-None-Match"); err != nil {
		f = Error(http.StatusBadRequest, "InvalidRequest", "s3proxy cannot strip the conditions of this request: "+err.Error())
	}
	p.mu.Lock()
	rec.Fault = f
	rec.ConditionsStripped = f.Kind == FaultNone
	p.mu.Unlock()
	return f
}

// begin records r and asks the fault hook about it.
func (p *Proxy) begin(r *http.Request) (*Request, Fault) {
	p.mu.Lock()
	p.seq++
	rec := newRequest(r, p.seq, time.Now())
	p.requests = append(p.requests, rec)
	hook := p.fault
	view := *rec
	p.mu.Unlock()

	var f Fault
	if hook != nil {
		f = hook(&view)
	}
	p.mu.Lock()
	rec.Fault = f
	p.mu.Unlock()
	return rec, f
}

func (p *Proxy) finish(rec *Request, body *hashingReader, status int, errText string) {
	n, sum := body.sum()
	p.mu.Lock()
	defer p.mu.Unlock()
	rec.BodySize, rec.BodyMD5 = n, sum
	rec.Status = status
	rec.Err = errText
	rec.End = time.Now()
	p.log.Debug("s3proxy", "op", rec.Op, "key", rec.Key, "part", rec.PartNumber,
		"status", status, "bytes", rec.BodySize, "fault", rec.Fault.Kind, "err", errText)
}

// serve carries out fault f for r; it returns the status sent (0 when the
// connection was dropped) and a description of any failure.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, body *hashingReader, f Fault) (int, string) {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return 0, "client gave up during delay"
		}
	}
	switch f.Kind {
	case FaultStatus:
		_, _ = io.Copy(io.Discard, body)
		for k, v := range f.Header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Body)))
		w.WriteHeader(f.Status)
		_, _ = w.Write(f.Body)
		return f.Status, ""
	case FaultDrop:
		if f.DropAfter < 0 {
			_, _ = io.Copy(io.Discard, body)
		} else {
			_, _ = io.CopyN(io.Discard, body, f.DropAfter)
		}
		return 0, hangUp(w)
	case FaultDropResponse:
		resp, err := p.forward(r, body)
		if err != nil {
			return 0, hangUp(w) + "; " + err.Error()
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return 0, hangUp(w)
	case FaultBlackhole:
		p.hold(r, f.Hold, false)
		return 0, "blackholed; " + hangUp(w)
	case FaultCutResponse, FaultStallResponse:
		return p.relayPart(w, r, body, f)
	default:
		return p.relay(w, r, body)
	}
}

// relay forwards r and copies the answer back to the client.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, body *hashingReader) (int, string) {
	resp, err := p.forward(r, body)
	if err != nil {
		if r.Context().Err() != nil {
			return 0, "client gave up: " + err.Error()
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
		return http.StatusBadGateway, err.Error()
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if !hopByHop(k) {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return resp.StatusCode, "relay response body: " + err.Error()
	}
	return resp.StatusCode, ""
}

// relayPart relays the answer to r up to f.After bytes of its body, then
// cuts the connection (FaultCutResponse) or holds it silent first
// (FaultStallResponse).
func (p *Proxy) relayPart(w http.ResponseWriter, r *http.Request, body *hashingReader, f Fault) (int, string) {
	resp, err := p.forward(r, body)
	if err != nil {
		return 0, hangUp(w) + "; " + err.Error()
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if !hopByHop(k) {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	sent, _ := io.CopyN(w, resp.Body, f.After)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	if f.Kind == FaultStallResponse {
		p.hold(r, f.Hold, true)
		return resp.StatusCode, fmt.Sprintf("body stalled after %d bytes; %s", sent, hangUp(w))
	}
	// A clean close after the bytes relayed: the client receives all of
	// them and then an end of stream short of Content-Length.
	return resp.StatusCode, fmt.Sprintf("body cut after %d bytes; %s", sent, hangUpAfter(w))
}

// hold waits for d (0: without end), until the proxy goes down or closes,
// or, when clientGone, until the client hangs up.
func (p *Proxy) hold(r *http.Request, d time.Duration, clientGone bool) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	var client <-chan struct{}
	if clientGone {
		client = r.Context().Done()
	}
	select {
	case <-timeout:
	case <-client:
	case <-p.goneCh():
	}
}

// forward sends r to the target with the same request line, Host and
// headers, streaming body.
func (p *Proxy) forward(r *http.Request, body io.Reader) (*http.Response, error) {
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	u := &url.URL{Scheme: p.target.Scheme, Host: p.target.Host, RawQuery: rawQuery}
	if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
		// Opaque is written to the request line verbatim, so the path the
		// server sees (and verifies the signature over) is the one sent.
		u.Opaque = path
	} else {
		u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target.String(), nil)
	if err != nil {
		return nil, err
	}
	out.URL = u
	out.Host = r.Host
	out.Header = make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if !hopByHop(k) {
			out.Header[k] = v
		}
	}
	for _, name := range r.Header.Values("Connection") {
		for _, f := range strings.Split(name, ",") {
			out.Header.Del(strings.TrimSpace(f))
		}
	}
	out.ContentLength = r.ContentLength
	if r.ContentLength != 0 {
		out.Body = io.NopCloser(body)
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("forward %s %s: %w", r.Method, u.RequestURI(), err)
	}
	return resp, nil
}

// hangUp closes the client connection abruptly (RST), without an answer.
func hangUp(w http.ResponseWriter) string { return closeConn(w, true) }

// hangUpAfter closes the client connection once what was written has been
// sent (FIN, not RST).
func hangUpAfter(w http.ResponseWriter) string { return closeConn(w, false) }

func closeConn(w http.ResponseWriter, abrupt bool) string {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return "cannot hijack connection"
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return "hijack: " + err.Error()
	}
	if tc, ok := conn.(*net.TCPConn); ok && abrupt {
		_ = tc.SetLinger(0)
	} else {
		_ = buf.Flush()
	}
	_ = conn.Close()
	if abrupt {
		return "connection dropped"
	}
	return "connection closed"
}

// hopByHop reports whether header name belongs to one connection only.
func hopByHop(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// hashingReader counts and hashes the bytes read through it. The transport
// may still be reading the body from its own goroutine when the answer has
// arrived, hence the lock.
type hashingReader struct {
	r io.Reader

	mu sync.Mutex
	h  hash.Hash // guarded by mu
	n  int64     // guarded by mu
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.mu.Lock()
		h.h.Write(p[:n])
		h.n += int64(n)
		h.mu.Unlock()
	}
	if errors.Is(err, http.ErrBodyReadAfterClose) {
		err = io.EOF
	}
	return n, err
}

// sum returns the bytes read so far and their MD5.
func (h *hashingReader) sum() (int64, [md5.Size]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s [md5.Size]byte
	copy(s[:], h.h.Sum(nil))
	return h.n, s
}

func base64MD5(sum [md5.Size]byte) string { return base64.StdEncoding.EncodeToString(sum[:]) }
