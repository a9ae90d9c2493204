package s3proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

const testSecret = "test-secret-key"

// signed returns headers carrying a SigV4 signature of a request to the
// proxy (Host as do sends it) over every header in h, made with secret.
func signed(t *testing.T, method, uri string, h http.Header, secret string) http.Header {
	t.Helper()
	h = h.Clone()
	h.Set("X-Amz-Date", "20260101T000000Z")
	h.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	names := []string{"host"}
	for k := range h {
		names = append(names, strings.ToLower(k))
	}
	slices.Sort(names)
	sig := sigV4{accessKey: "AK", scope: "20260101/us-east-1/s3/aws4_request", date: "20260101",
		region: "us-east-1", service: "s3", signed: names}
	r, err := http.NewRequest(method, "http://signed-host.example:1234"+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI, r.Header, r.Host = uri, h, "signed-host.example:1234"
	sig.signature = sign(r, sig, secret, "UNSIGNED-PAYLOAD")
	h.Set("Authorization", sig.header())
	return h
}

func TestRejectConditions(t *testing.T) {
	up := newUpstream(t)
	p := Start(t, up.srv.URL)
	p.SetRejectConditions(true)
	tests := []struct {
		method, uri string
		header      http.Header
		rejected    bool
	}{
		{"PUT", "/b/k?x-id=PutObject", http.Header{"If-None-Match": {"*"}}, true},
		{"PUT", "/b/k?x-id=PutObject", http.Header{"If-Match": {`"e"`}}, true},
		{"POST", "/b/k?uploads=", http.Header{"If-None-Match": {"*"}}, true},
		{"POST", "/b/k?uploadId=u", http.Header{"If-Match": {`"e"`}}, true},
		{"DELETE", "/b/k?x-id=DeleteObject", http.Header{"If-Match": {`"e"`}}, true},
		{"PUT", "/b/k?x-id=PutObject", nil, false},
		{"GET", "/b/k", http.Header{"If-Match": {`"e"`}}, false},
		{"HEAD", "/b/k", http.Header{"If-None-Match": {`"e"`}}, false},
		{"PUT", "/b/k", http.Header{"X-Amz-Copy-Source": {"/b/src"}, "X-Amz-Copy-Source-If-Match": {`"e"`}}, false},
	}
	for _, tt := range tests {
		before := len(up.requests())
		resp, body, err := do(t, p, tt.method, tt.uri, nil, tt.header)
		if err != nil {
			t.Fatal(err)
		}
		forwarded := len(up.requests()) > before
		if tt.rejected {
			if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "<Code>NotImplemented</Code>") || forwarded {
				t.Errorf("%s %s %v: %d %q, forwarded %v; want 501 NotImplemented, not forwarded", tt.method, tt.uri, tt.header, resp.StatusCode, body, forwarded)
			}
		} else if resp.StatusCode != http.StatusOK || !forwarded {
			t.Errorf("%s %s %v: %d, forwarded %v; want it forwarded", tt.method, tt.uri, tt.header, resp.StatusCode, forwarded)
		}
	}
	recs := waitDone(t, p)
	if recs[0].IfNoneMatch != "*" || recs[1].IfMatch != `"e"` || recs[0].Status != 501 {
		t.Errorf("records %+v", recs[:2])
	}
}

func TestStripConditions(t *testing.T) {
	up := newUpstream(t)
	p := StartWith(t, Options{Target: up.srv.URL, SecretKey: testSecret})
	p.SetStripConditions(true)
	uri := "/b/dir/a%20b?uploadId=u%2F1&x-id=CompleteMultipartUpload"
	h := signed(t, "POST", uri, http.Header{"If-Match": {`"etag"`}, "If-None-Match": {"*"}, "X-Amz-Meta-Mode": {"33188"}}, testSecret)
	resp, _, err := do(t, p, "POST", uri, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stripped request answered %d", resp.StatusCode)
	}
	seen := up.requests()[0]
	if seen.header.Get("If-Match") != "" || seen.header.Get("If-None-Match") != "" || seen.header.Get("X-Amz-Meta-Mode") != "33188" {
		t.Errorf("upstream saw %v; want the conditions gone and the rest kept", seen.header)
	}
	sig, err := parseSigV4(seen.header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sig.signed, ";") != "host;x-amz-content-sha256;x-amz-date;x-amz-meta-mode" {
		t.Errorf("signed headers %v", sig.signed)
	}
	fwd, _ := http.NewRequest("POST", "http://x"+uri, nil)
	fwd.RequestURI, fwd.Header, fwd.Host = seen.requestURI, seen.header, seen.host
	if want := sign(fwd, sig, testSecret, "UNSIGNED-PAYLOAD"); sig.signature != want {
		t.Errorf("forwarded signature %s, want %s", sig.signature, want)
	}
	recs := waitDone(t, p)
	if r := recs[0]; !r.ConditionsStripped || r.IfMatch != `"etag"` || r.IfNoneMatch != "*" {
		t.Errorf("record %+v", r)
	}
}

func TestStripConditionsRefusesWhatItCannotSign(t *testing.T) {
	up := newUpstream(t)
	p := StartWith(t, Options{Target: up.srv.URL, SecretKey: testSecret})
	p.SetStripConditions(true)
	uri := "/b/k?x-id=PutObject"
	cond := http.Header{"If-None-Match": {"*"}}
	streaming := signed(t, "PUT", uri, cond, testSecret)
	streaming.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
	for name, h := range map[string]http.Header{
		"another secret": signed(t, "PUT", uri, cond, "another secret"),
		"unsigned":       cond,
		"streaming":      streaming,
	} {
		resp, body, err := do(t, p, "PUT", uri, nil, h)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "cannot strip") {
			t.Errorf("%s: %d %q; want 400", name, resp.StatusCode, body)
		}
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}

	defer func() {
		if recover() == nil {
			t.Error("SetStripConditions without a secret key did not panic")
		}
	}()
	Start(t, up.srv.URL).SetStripConditions(true)
}
