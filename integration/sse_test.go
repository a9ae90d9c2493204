package integration

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
)

// The SSE-C request headers, as the proxy records them.
const (
	hdrSSECAlgorithm = "X-Amz-Server-Side-Encryption-Customer-Algorithm"
	hdrSSECKey       = "X-Amz-Server-Side-Encryption-Customer-Key"
	hdrSSECKeyMD5    = "X-Amz-Server-Side-Encryption-Customer-Key-Md5"
)

// customerKey is an SSE-C key and the header values that carry it.
type customerKey struct {
	raw         []byte
	b64, md5b64 string
}

func newCustomerKey(t *testing.T) customerKey {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(raw)
	return customerKey{raw: raw, b64: base64.StdEncoding.EncodeToString(raw), md5b64: base64.StdEncoding.EncodeToString(sum[:])}
}

// checkHeaders fails unless r carries the three SSE-C headers for k.
func (k customerKey) checkHeaders(t *testing.T, r s3proxy.Request) {
	t.Helper()
	if r.Header.Get(hdrSSECAlgorithm) != "AES256" || r.Header.Get(hdrSSECKey) != k.b64 || r.Header.Get(hdrSSECKeyMD5) != k.md5b64 {
		t.Errorf("#%d %s %s part %d: SSE-C headers algorithm=%q key present=%v key-md5 matches=%v",
			r.Seq, r.Op, r.Key, r.PartNumber, r.Header.Get(hdrSSECAlgorithm),
			r.Header.Get(hdrSSECKey) == k.b64, r.Header.Get(hdrSSECKeyMD5) == k.md5b64)
	}
}

// leaks reports the forms of k found in text.
func (k customerKey) leaks(text string) []string {
	var found []string
	for name, form := range map[string]string{
		"base64": k.b64, "hex": hex.EncodeToString(k.raw), "raw": string(k.raw),
		"base64url": base64.URLEncoding.EncodeToString(k.raw),
	} {
		if strings.Contains(text, form) {
			found = append(found, name)
		}
	}
	return found
}

// TestSSECustomerKey writes a 64 MiB file and a small one with a customer
// key (SSE-C) through TLS on both sides of the recording proxy, reads them
// back through a new mount, and reads with a wrong key.
func TestSSECustomerKey(t *testing.T) {
	e, tlsArgs := tlsEnv(t)
	key := newCustomerKey(t)
	keyFile := writeFile0600(t, "sse-c.key", []byte(key.b64+"\n"))
	args := append(append([]string{}, tlsArgs...), "--sse-c-key-file", keyFile, "--debug")
	m := e.mount(mountConfig{extraArgs: args})

	const big, small, size = "secret.bin", "secret.txt", 64 * miB
	sum, err := ddStream(t, m.path(big), 31, size, 2*time.Minute)
	if err != nil {
		t.Fatalf("dd: %v", err)
	}
	smallBody := []byte("a small secret, one PutObject\n")
	if err := os.WriteFile(m.path(small), smallBody, 0o644); err != nil {
		t.Fatalf("write %s: %v", small, err)
	}
	e.settle()

	// The three headers on CreateMultipartUpload, on every UploadPart and on
	// the PutObject.
	var creates, parts, puts int
	for _, r := range e.proxy.Ops(s3proxy.OpCreateMultipartUpload, s3proxy.OpUploadPart, s3proxy.OpPutObject) {
		switch {
		case r.Key == big && r.Op == s3proxy.OpCreateMultipartUpload:
			creates++
		case r.Key == big && r.Op == s3proxy.OpUploadPart:
			parts++
		case r.Key == small && r.Op == s3proxy.OpPutObject:
			puts++
		default:
			continue
		}
		key.checkHeaders(t, r)
	}
	if creates != 1 || parts < 2 || puts != 1 {
		t.Errorf("%d CreateMultipartUpload, %d UploadPart, %d PutObject; want 1, several, 1:\n%s",
			creates, parts, puts, describeAll(e.proxy, s3proxy.OpCreateMultipartUpload, s3proxy.OpUploadPart, s3proxy.OpPutObject))
	}

	// The stored objects open with the key, and only with it.
	checkSSECObject(t, e, big, key, sum, size)
	checkSSECObject(t, e, small, key, md5.Sum(smallBody), int64(len(smallBody)))
	if _, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: aws.String(small)}); err == nil {
		t.Errorf("HeadObject without the key succeeded: the object is not encrypted with a customer key")
	}

	// partfs status shows the mount, never the key.
	status, err := e.runPartfs("status", m.dir)
	if err != nil || !strings.Contains(status, "SSE-C") {
		t.Errorf("partfs status: %v\n%s", err, status)
	}
	if l := key.leaks(status); len(l) > 0 {
		t.Errorf("partfs status shows the key (%v):\n%s", l, status)
	}

	// A new mount with the same key reads the data back from S3, sending
	// the key with every GET and HEAD.
	e.proxy.Reset()
	m2 := e.mount(mountConfig{extraArgs: args})
	got := fileMD5(t, m2.path(big))
	if got != sum {
		t.Errorf("read back through a new mount: md5 %x, want %x", got, sum)
	}
	if b, err := os.ReadFile(m2.path(small)); err != nil || !bytes.Equal(b, smallBody) {
		t.Errorf("read %s back: %q, %v", small, b, err)
	}
	e.settle()
	gets := 0
	for _, r := range e.proxy.Ops(s3proxy.OpGetObject, s3proxy.OpHeadObject) {
		if r.Key == big || r.Key == small {
			gets++
			key.checkHeaders(t, r)
		}
	}
	if gets == 0 {
		t.Error("the new mount sent no GET or HEAD for the objects")
	}

	// A mount with another key cannot read them, and says so cleanly: the
	// read fails, partfs keeps serving.
	wrong := newCustomerKey(t)
	wrongFile := writeFile0600(t, "wrong.key", wrong.raw)
	wrongArgs := append(append([]string{}, tlsArgs...), "--sse-c-key-file", wrongFile, "--debug")
	m3 := e.mount(mountConfig{extraArgs: wrongArgs})
	done := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(m3.path(small))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("reading %s with the wrong key succeeded", small)
		} else {
			t.Logf("read with the wrong key: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("reading with the wrong key hangs")
	}
	if _, err := os.ReadDir(m3.dir); err != nil {
		t.Errorf("the mount with the wrong key stopped serving: %v", err)
	}

	// No log line holds either key, in any form.
	for _, mm := range []*mount{m, m2, m3} {
		mm.stop()
	}
	for i, mm := range []*mount{m, m2, m3} {
		log := mm.log()
		for _, k := range []customerKey{key, wrong} {
			if l := k.leaks(log); len(l) > 0 {
				t.Errorf("mount %d logged an SSE-C key (%v)", i+1, l)
			}
		}
		if !strings.Contains(log, "s3 request") {
			t.Errorf("mount %d: --debug logged no S3 request", i+1)
		}
	}
}

// checkSSECObject reads key back directly with the customer key and checks
// its content.
func checkSSECObject(t *testing.T, e *env, name string, k customerKey, want [md5.Size]byte, size int64) {
	t.Helper()
	out, err := e.s3.GetObject(e.ctx(), &s3.GetObjectInput{
		Bucket: &e.bucket, Key: aws.String(name),
		SSECustomerAlgorithm: aws.String("AES256"), SSECustomerKey: aws.String(k.b64), SSECustomerKeyMD5: aws.String(k.md5b64),
	})
	if err != nil {
		t.Errorf("get %s with the key: %v", name, err)
		return
	}
	defer out.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, out.Body)
	var got [md5.Size]byte
	copy(got[:], h.Sum(nil))
	if err != nil || n != size || got != want {
		t.Errorf("%s: %d bytes md5 %x (%v), want %d bytes md5 %x", name, n, got, err, size, want)
	}
}

// fileMD5 reads a file and returns its MD5.
func fileMD5(t *testing.T, path string) [md5.Size]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var s [md5.Size]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestServerSideEncryption writes with --sse AES256 and with --sse aws:kms
// and a key ID: HeadObject must report the encryption of small objects
// (PutObject) and multipart ones alike.
func TestServerSideEncryption(t *testing.T) {
	e, tlsArgs := tlsEnv(t)
	tests := []struct {
		name, kmsKeyID string
		args           []string
		want           types.ServerSideEncryption
	}{
		{name: "AES256", args: []string{"--sse", "AES256"}, want: types.ServerSideEncryptionAes256},
		{name: "aws-kms", args: []string{"-o", "sse=aws:kms,sse_kms_key_id=" + miniotest.KMSKeyName},
			kmsKeyID: miniotest.KMSKeyName, want: types.ServerSideEncryptionAwsKms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.mount(mountConfig{extraArgs: append(append([]string{}, tlsArgs...), tt.args...)})
			smallKey, bigKey := tt.name+"/small.txt", tt.name+"/big.bin"
			if err := os.MkdirAll(m.path(tt.name), 0o755); err != nil {
				t.Fatal(err)
			}
			body := []byte("encrypted at rest\n")
			if err := os.WriteFile(m.path(smallKey), body, 0o644); err != nil {
				t.Fatalf("write: %v", err)
			}
			sum, err := ddStream(t, m.path(bigKey), 32, 20*miB, time.Minute)
			if err != nil {
				t.Fatalf("dd: %v", err)
			}
			for _, k := range []string{smallKey, bigKey} {
				out, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: aws.String(k)})
				if err != nil {
					t.Fatalf("head %s: %v", k, err)
				}
				if out.ServerSideEncryption != tt.want {
					t.Errorf("%s: HeadObject reports encryption %q, want %q", k, out.ServerSideEncryption, tt.want)
				}
				if tt.kmsKeyID != "" && !strings.Contains(aws.ToString(out.SSEKMSKeyId), tt.kmsKeyID) {
					t.Errorf("%s: KMS key %q, want %q", k, aws.ToString(out.SSEKMSKeyId), tt.kmsKeyID)
				}
			}
			e.checkObject(bigKey, sum, 20*miB)
			if got := fileMD5(t, m.path(bigKey)); got != sum {
				t.Errorf("read back through the mount: md5 %x, want %x", got, sum)
			}
			for _, r := range e.proxy.Ops(s3proxy.OpPutObject, s3proxy.OpCreateMultipartUpload) {
				if (r.Key == smallKey || r.Key == bigKey) && r.Header.Get("X-Amz-Server-Side-Encryption") != string(tt.want) {
					t.Errorf("#%d %s %s: x-amz-server-side-encryption %q", r.Seq, r.Op, r.Key, r.Header.Get("X-Amz-Server-Side-Encryption"))
				}
			}
		})
	}
}
