package s3proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestTLSProxy(t *testing.T) {
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls:"+r.Header.Get("X-Amz-Server-Side-Encryption-Customer-Algorithm"))
	}))
	defer server.Close()
	serverCA := filepath.Join(t.TempDir(), "server.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	if err := os.WriteFile(serverCA, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	p := StartTLS(t, server.URL, serverCA)

	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in the proxy's CA file")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/bucket/key", nil)
	req.Header.Set("X-Amz-Server-Side-Encryption-Customer-Algorithm", "AES256")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "tls:AES256" {
		t.Errorf("answer %q", body)
	}
	rs := p.Requests()
	if len(rs) != 1 || rs[0].Op != OpGetObject || rs[0].Key != "key" || !rs[0].SSECustomer {
		t.Errorf("recorded %+v", rs)
	}
	// A client that does not trust the proxy's certificate is refused.
	if _, err := http.Get(p.URL() + "/bucket/key"); err == nil {
		t.Error("a client without the proxy's CA connected")
	}
}
