package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

const (
	kiB = int64(1) << 10
	miB = int64(1) << 20
	giB = int64(1) << 30
)

// s3Timeout bounds one call of the checking S3 client.
const s3Timeout = 2 * time.Minute

// randomFile writes size pseudo-random bytes to a new file outside the mount
// and returns its path and content.
func randomFile(t testing.TB, seed uint64, size int64) (string, []byte) {
	t.Helper()
	b := testkit.RandomBytes(seed, size)
	path := t.TempDir() + "/src"
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// ctx returns a context bounded by s3Timeout.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// put stores an object directly in MinIO and returns its ETag.
func (e *env) put(key string, body []byte) string {
	e.t.Helper()
	out, err := e.s3.PutObject(e.ctx(), &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: bytes.NewReader(body)})
	if err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
	return strings.Trim(*out.ETag, `"`)
}

// head returns an object's ETag (without quotes) and size.
func (e *env) head(key string) (string, int64) {
	e.t.Helper()
	out, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		e.t.Fatalf("head %s: %v", key, err)
	}
	return strings.Trim(*out.ETag, `"`), *out.ContentLength
}

// exists reports whether key is stored.
func (e *env) exists(key string) bool {
	e.t.Helper()
	_, err := e.s3.HeadObject(e.ctx(), &s3.HeadObjectInput{Bucket: &e.bucket, Key: &key})
	var nf *types.NotFound
	switch {
	case err == nil:
		return true
	case errors.As(err, &nf):
		return false
	}
	e.t.Fatalf("head %s: %v", key, err)
	return false
}

// get returns an object's content.
func (e *env) get(key string) []byte {
	e.t.Helper()
	out, err := e.s3.GetObject(e.ctx(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		e.t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// sum streams an object and returns its MD5 and size.
func (e *env) sum(key string) ([md5.Size]byte, int64) {
	e.t.Helper()
	out, err := e.s3.GetObject(e.ctx(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		e.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		e.t.Fatalf("read %s: %v", key, err)
	}
	var s [md5.Size]byte
	copy(s[:], h.Sum(nil))
	return s, n
}

// uploads lists the multipart uploads in progress in the bucket.
func (e *env) uploads() []types.MultipartUpload {
	e.t.Helper()
	out, err := e.s3.ListMultipartUploads(e.ctx(), &s3.ListMultipartUploadsInput{Bucket: &e.bucket})
	if err != nil {
		e.t.Fatalf("list multipart uploads: %v", err)
	}
	return out.Uploads
}

// checkObject fails unless key holds size bytes with the given MD5.
func (e *env) checkObject(key string, want [md5.Size]byte, size int64) {
	e.t.Helper()
	got, n := e.sum(key)
	if got != want || n != size {
		e.t.Errorf("object %s: %d bytes md5 %x, want %d bytes md5 %x", key, n, got, size, want)
	}
}

// settle waits until the proxy has finished recording every request.
func (e *env) settle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.proxy.WaitIdle(ctx); err != nil {
		e.t.Fatalf("requests still in flight at the proxy: %v", err)
	}
}

// multipartStats summarises the proxy's view of one multipart upload.
type multipartStats struct {
	parts int // N, the highest part number completed
}

// checkMultipart fails unless the proxy saw key written as exactly one
// multipart upload of size bytes: one CreateMultipartUpload, UploadParts
// numbered 1..N whose Content-MD5 matches the body received and of which
// all but the last are at least 5 MiB, and one CompleteMultipartUpload.
// Attempts that failed (faults, retries) are allowed; only successful ones
// make up the object. PutObjects of the same key are not judged here: a
// writer that dup(2)s its descriptor (a shell redirection, dd) makes the
// kernel flush the file when the duplicate is closed, before the first
// byte is written; what that may do to an existing object is
// TestKillDuringOverwrite's subject.
func (e *env) checkMultipart(key string, size int64) multipartStats {
	t := e.t
	t.Helper()
	e.settle()
	var creates, completes int
	final := map[int]s3proxy.Request{} // part number -> last successful attempt
	for _, r := range e.proxy.Requests() {
		if r.Key != key || r.Status != 200 {
			continue
		}
		switch r.Op {
		case s3proxy.OpCreateMultipartUpload:
			creates++
		case s3proxy.OpCompleteMultipartUpload:
			completes++
		case s3proxy.OpUploadPart:
			if !r.ContentMD5Matches() {
				t.Errorf("UploadPart %d of %s: Content-MD5 %q, body received (%d bytes) has md5 %x",
					r.PartNumber, key, r.ContentMD5, r.BodySize, r.BodyMD5)
			}
			final[r.PartNumber] = r
		}
	}
	if creates != 1 || completes != 1 {
		t.Errorf("%s: %d CreateMultipartUpload, %d CompleteMultipartUpload; want 1 and 1; requests:\n%s",
			key, creates, completes, e.describe(key))
	}
	var total int64
	for n := 1; n <= len(final); n++ {
		r, ok := final[n]
		if !ok {
			t.Errorf("%s: part numbers %v are not 1..%d", key, partNumbers(final), len(final))
			break
		}
		if n < len(final) && r.BodySize < 5*miB {
			t.Errorf("%s: part %d of %d is %d bytes, under the 5 MiB minimum", key, n, len(final), r.BodySize)
		}
		total += r.BodySize
	}
	if total != size {
		t.Errorf("%s: parts add up to %d bytes, want %d", key, total, size)
	}
	etag, stored := e.head(key)
	if want := fmt.Sprintf("-%d", len(final)); !strings.HasSuffix(etag, want) || stored != size {
		t.Errorf("%s: ETag %q size %d; want an ETag ending in %q and size %d", key, etag, stored, want, size)
	}
	return multipartStats{parts: len(final)}
}

// describe lists the proxy's requests for key, one a line.
func (e *env) describe(key string) string {
	var b strings.Builder
	for _, r := range e.proxy.Requests() {
		if r.Key != key {
			continue
		}
		fmt.Fprintf(&b, "  #%d %s %s part=%d status=%d bytes=%d fault=%v\n",
			r.Seq, r.Start.Format("15:04:05.000"), r.Op, r.PartNumber, r.Status, r.BodySize, r.Fault.Kind)
	}
	return b.String()
}

func partNumbers(m map[int]s3proxy.Request) []int {
	var out []int
	for n := range m {
		out = append(out, n)
	}
	return out
}

// checkPut fails unless the proxy saw key written as one PutObject carrying
// a Content-MD5 that matches its body, and no multipart upload.
func (e *env) checkPut(key string) {
	t := e.t
	t.Helper()
	e.settle()
	var puts, multipart int
	for _, r := range e.proxy.Requests() {
		if r.Key != key {
			continue
		}
		switch r.Op {
		case s3proxy.OpPutObject:
			if r.Status != 200 {
				continue
			}
			puts++
			if !r.ContentMD5Matches() {
				t.Errorf("PutObject %s: Content-MD5 %q, body received (%d bytes) has md5 %x",
					key, r.ContentMD5, r.BodySize, r.BodyMD5)
			}
		case s3proxy.OpCreateMultipartUpload, s3proxy.OpUploadPart, s3proxy.OpCompleteMultipartUpload:
			multipart++
		}
	}
	if puts != 1 || multipart != 0 {
		t.Errorf("%s: %d successful PutObject and %d multipart requests; want 1 and 0; requests:\n%s",
			key, puts, multipart, e.describe(key))
	}
}

// writer is a process writing a stream into a file, fed by the test
// through a pipe so the test decides when the writer may finish.
type writer struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  *os.File
	stderr bytes.Buffer
	h      io.Writer // hashes what was fed
	sum    func() [md5.Size]byte
	fed    int64
	exited chan struct{}
	err    error // valid once exited is closed
}

// startDD starts `dd of=path bs=1M` reading its input from the test.
func startDD(t testing.TB, path string) *writer {
	t.Helper()
	return startWriter(t, "dd", "of="+path, "bs=1M", "iflag=fullblock", "status=none")
}

// startWriter starts a command that copies its standard input into a file,
// fed by the test through a pipe.
func startWriter(t testing.TB, name string, args ...string) *writer {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := md5.New()
	wr := &writer{t: t, stdin: w, h: h, exited: make(chan struct{})}
	wr.sum = func() (s [md5.Size]byte) { copy(s[:], h.Sum(nil)); return s }
	wr.cmd = exec.Command(name, args...)
	wr.cmd.Stdin = r
	wr.cmd.Stderr = &wr.stderr
	if err := wr.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	go func() {
		wr.err = wr.cmd.Wait()
		close(wr.exited)
	}()
	t.Cleanup(func() {
		w.Close()
		select {
		case <-wr.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("%s still running 30s after its input closed; killing it", wr.cmd)
			wr.cmd.Process.Kill()
			<-wr.exited
		}
	})
	return wr
}

// feed writes the next n bytes of src to the writer's input. It returns an
// error when the writer stopped reading (for instance after a failed write).
func (w *writer) feed(src io.Reader, n int64) error {
	_, err := io.CopyN(io.MultiWriter(w.stdin, w.h), src, n)
	if err == nil {
		w.fed += n
	}
	return err
}

// running reports whether the writer has not exited yet.
func (w *writer) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// finish closes the writer's input and waits for it to exit.
func (w *writer) finish(timeout time.Duration) error {
	w.stdin.Close()
	select {
	case <-w.exited:
	case <-time.After(timeout):
		w.cmd.Process.Kill()
		<-w.exited
		return fmt.Errorf("%s still running %v after its input closed", w.cmd, timeout)
	}
	if w.err != nil {
		return fmt.Errorf("%v: %s", w.err, strings.TrimSpace(w.stderr.String()))
	}
	return nil
}

// ddStream writes size bytes of the stream seeded by seed into path with dd
// and returns their MD5.
func ddStream(t testing.TB, path string, seed uint64, size int64, timeout time.Duration) ([md5.Size]byte, error) {
	t.Helper()
	w := startDD(t, path)
	if err := w.feed(testkit.RandomReader(seed), size); err != nil {
		return [md5.Size]byte{}, fmt.Errorf("feed dd: %w (dd: %v)", err, w.finish(timeout))
	}
	return w.sum(), w.finish(timeout)
}

// run runs a command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v", name, timeout)
	}
	return strings.TrimSpace(string(out)), err
}

// abortInput is the request aborting upload u.
func abortInput(bucket string, u types.MultipartUpload) *s3.AbortMultipartUploadInput {
	return &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId}
}
