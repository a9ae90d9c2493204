package s3proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// sigV4 is the parsed Authorization header of a SigV4 request.
type sigV4 struct {
	accessKey string
	scope     string // date/region/service/aws4_request
	date      string // of the scope, yyyymmdd
	region    string
	service   string
	signed    []string // lower-case header names, sorted
	signature string
}

const sigV4Algorithm = "AWS4-HMAC-SHA256"

func parseSigV4(auth string) (sigV4, error) {
	rest, ok := strings.CutPrefix(auth, sigV4Algorithm+" ")
	if !ok {
		return sigV4{}, errors.New("not a SigV4 Authorization header")
	}
	var s sigV4
	for _, field := range strings.Split(rest, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch name {
		case "Credential":
			parts := strings.Split(value, "/")
			if len(parts) != 5 || parts[4] != "aws4_request" {
				return sigV4{}, fmt.Errorf("credential %q has no SigV4 scope", value)
			}
			s.accessKey, s.date, s.region, s.service = parts[0], parts[1], parts[2], parts[3]
			s.scope = strings.Join(parts[1:], "/")
		case "SignedHeaders":
			s.signed = strings.Split(value, ";")
		case "Signature":
			s.signature = value
		}
	}
	if s.scope == "" || len(s.signed) == 0 || s.signature == "" {
		return sigV4{}, errors.New("incomplete SigV4 Authorization header")
	}
	return s, nil
}

func (s sigV4) header() string {
	return fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		sigV4Algorithm, s.accessKey, s.scope, strings.Join(s.signed, ";"), s.signature)
}

// resign removes the headers drop from r and signs r again with secret,
// over the headers it signed before less those. It first signs r as it
// arrived and compares with the signature it carries, so that a request
// this code does not canonicalise as its client did is refused, never
// forwarded with a signature made up here. Requests signed in the query
// string and streaming (chunk-signed) bodies are refused too: changing
// their headers would take rewriting the URL or the body.
func resign(r *http.Request, secret string, drop ...string) error {
	sig, err := parseSigV4(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" || strings.HasPrefix(payload, "STREAMING-") {
		return fmt.Errorf("payload hash %q cannot be signed again without the body", payload)
	}
	if got := sign(r, sig, secret, payload); got != sig.signature {
		return errors.New("the request's own signature cannot be reproduced (another secret key, or a canonical form this proxy does not know)")
	}
	for _, name := range drop {
		r.Header.Del(name)
		sig.signed = slices.DeleteFunc(sig.signed, func(h string) bool { return strings.EqualFold(h, name) })
	}
	sig.signature = sign(r, sig, secret, payload)
	r.Header.Set("Authorization", sig.header())
	return nil
}

// sign returns the SigV4 signature of r over the headers sig names.
func sign(r *http.Request, sig sigV4, secret, payload string) string {
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	query, _ := url.ParseQuery(rawQuery)
	var headers strings.Builder
	for _, name := range sig.signed {
		headers.WriteString(name + ":" + canonicalValue(r, name) + "\n")
	}
	canonical := strings.Join([]string{
		r.Method,
		path,
		strings.ReplaceAll(query.Encode(), "+", "%20"),
		headers.String(),
		strings.Join(sig.signed, ";"),
		payload,
	}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{sigV4Algorithm, r.Header.Get("X-Amz-Date"), sig.scope, hex.EncodeToString(sum[:])}, "\n")
	key := []byte("AWS4" + secret)
	for _, part := range []string{sig.date, sig.region, sig.service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(hmacSHA256(key, toSign))
}

// canonicalValue is the value of header name as SigV4 signs it: the values
// joined by commas, each trimmed and with runs of spaces made one.
func canonicalValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "content-length":
		if v := r.Header.Get("Content-Length"); v != "" {
			return v
		}
		return strconv.FormatInt(r.ContentLength, 10)
	}
	values := r.Header.Values(name)
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
