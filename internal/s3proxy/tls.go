package s3proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/testcert"
)

// TLSProxy is a Proxy that clients reach over https, in front of an https
// server. Servers such as MinIO accept some requests (SSE-C) only over TLS,
// so a recording proxy in front of them must speak TLS on both sides: it
// presents its own self-signed certificate for 127.0.0.1, whose PEM is at
// CAFile for clients to trust, and it trusts the server's certificate from
// the CA file it is given. Requests, faults and records are the embedded
// Proxy's.
type TLSProxy struct {
	*Proxy
	// CAFile is the PEM of the certificate the proxy presents.
	CAFile string

	front    *http.Server
	frontURL string
	tmpDir   string // removed by Close; "" when TLSOptions.Dir was given
}

// TLSOptions configures a TLSProxy.
type TLSOptions struct {
	// Target is the server's https base URL.
	Target string
	// TargetCAFile is a PEM file of the certificates to trust for Target.
	TargetCAFile string
	// Dir receives CAFile; default a new temporary directory that Close
	// removes.
	Dir string
}

// NewTLS starts a TLS proxy in front of opts.Target.
func NewTLS(opts TLSOptions) (*TLSProxy, error) {
	pemBytes, err := os.ReadFile(opts.TargetCAFile)
	if err != nil {
		return nil, fmt.Errorf("s3proxy: target CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("s3proxy: no certificate in " + opts.TargetCAFile)
	}
	dir, removeDir := opts.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "s3proxy-tls-"); err != nil {
			return nil, err
		}
		removeDir = true
	}
	cert, caFile, err := selfSigned(dir)
	if err != nil {
		return nil, err
	}
	p, err := New(Options{Target: opts.Target})
	if err != nil {
		return nil, err
	}
	// No request has reached the proxy yet: its URL has not been handed out.
	p.transport.TLSClientConfig = &tls.Config{RootCAs: pool}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("s3proxy: listen: %w", err)
	}
	tp := &TLSProxy{
		Proxy:    p,
		CAFile:   caFile,
		frontURL: "https://" + ln.Addr().String(),
		front: &http.Server{
			Handler:           p,
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          p.server.ErrorLog,
		},
	}
	if removeDir {
		tp.tmpDir = dir
	}
	// HTTP/1.1 only (no NextProtos): fault injection hijacks connections.
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	go tp.front.Serve(tlsLn) //nolint:errcheck // returns ErrServerClosed on Close
	return tp, nil
}

// StartTLS starts a TLS proxy in front of target for the duration of a
// test; targetCAFile is the PEM the server's certificate is checked against.
func StartTLS(tb testing.TB, target, targetCAFile string) *TLSProxy {
	tb.Helper()
	p, err := NewTLS(TLSOptions{Target: target, TargetCAFile: targetCAFile, Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// URL is the proxy's https base URL.
func (p *TLSProxy) URL() string { return p.frontURL }

// Close stops the proxy.
func (p *TLSProxy) Close() error {
	err := p.front.Close()
	if p.tmpDir != "" {
		os.RemoveAll(p.tmpDir)
	}
	if perr := p.Proxy.Close(); err == nil {
		err = perr
	}
	return err
}

// selfSigned makes a certificate for 127.0.0.1 and writes its PEM to dir.
func selfSigned(dir string) (tls.Certificate, string, error) {
	certPEM, keyPEM, err := testcert.Loopback("s3proxy 127.0.0.1")
	if err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	caFile := filepath.Join(dir, "s3proxy-ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		return tls.Certificate{}, "", err
	}
	return cert, caFile, nil
}
