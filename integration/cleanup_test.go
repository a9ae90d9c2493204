package integration

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// sdkUpload is a multipart upload that the test drives directly with the
// SDK, standing for a live upload of another program or machine.
type sdkUpload struct {
	e     *env
	key   string
	id    string
	parts []types.CompletedPart
	data  []byte
}

// startSDKUpload starts an upload and sends its first part.
func startSDKUpload(e *env, key string) *sdkUpload {
	e.t.Helper()
	out, err := e.s3.CreateMultipartUpload(e.ctx(), &s3.CreateMultipartUploadInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		e.t.Fatalf("create upload %s: %v", key, err)
	}
	u := &sdkUpload{e: e, key: key, id: aws.ToString(out.UploadId)}
	u.part(testkit.RandomBytes(40, 5*miB))
	return u
}

// part sends the next part; it fails the test if the upload is gone.
func (u *sdkUpload) part(b []byte) {
	u.e.t.Helper()
	n := int32(len(u.parts) + 1)
	out, err := u.e.s3.UploadPart(u.e.ctx(), &s3.UploadPartInput{
		Bucket: &u.e.bucket, Key: &u.key, UploadId: &u.id, PartNumber: aws.Int32(n), Body: bytes.NewReader(b),
	})
	if err != nil {
		u.e.t.Fatalf("upload part %d of %s (the upload was aborted?): %v", n, u.key, err)
	}
	u.parts = append(u.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	u.data = append(u.data, b...)
}

// complete sends a last part and completes the upload, proving it was
// left alone, and checks the object.
func (u *sdkUpload) complete() {
	u.e.t.Helper()
	u.part([]byte("the end\n"))
	if _, err := u.e.s3.CompleteMultipartUpload(u.e.ctx(), &s3.CompleteMultipartUploadInput{
		Bucket: &u.e.bucket, Key: &u.key, UploadId: &u.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.parts},
	}); err != nil {
		u.e.t.Fatalf("complete the live upload of %s: %v", u.key, err)
	}
	if got := u.e.get(u.key); !bytes.Equal(got, u.data) {
		u.e.t.Errorf("%s: %d bytes, want %d", u.key, len(got), len(u.data))
	}
}

// uploadKeys lists the keys of the uploads in progress, sorted.
func (e *env) uploadKeys() []string {
	var keys []string
	for _, u := range e.uploads() {
		keys = append(keys, aws.ToString(u.Key))
	}
	sort.Strings(keys)
	return keys
}

// crashWhileWriting mounts source, writes key through it until parts have
// been sent, and kills partfs with SIGKILL, leaving the upload behind.
func (e *env) crashWhileWriting(source, name, key string) {
	t := e.t.(*testing.T)
	t.Helper()
	m := e.mountSource(mountConfig{}, source)
	w := startDD(t, m.path(name))
	killWhileUploading(t, e, m, w, key)
	removeStatusSocket(m.dir)
}

// TestUploadCleanup leaves multipart uploads behind with kill -9 and has
// them aborted, by the next mount (with the age set to 0) and by partfs
// cleanup, while a live upload started with the SDK under another prefix,
// and one a live mount is writing, are left alone.
func TestUploadCleanup(t *testing.T) {
	e := newEnv(t)
	live := startSDKUpload(e, "live/other.bin")
	source := e.bucket + ":data"

	// The next mount of the prefix.
	{
		e.crashWhileWriting(source, "crashed.bin", "data/crashed.bin")
		if got := e.uploadKeys(); strings.Join(got, " ") != "data/crashed.bin live/other.bin" {
			t.Fatalf("uploads after the kill: %q", got)
		}
		// The default age (24h) keeps an upload of seconds ago.
		e.mountSource(mountConfig{}, source).stop()
		if got := e.uploadKeys(); len(got) != 2 {
			t.Errorf("a mount with the default age aborted an upload of seconds ago: %q left", got)
		}
		e.mountSource(mountConfig{extraArgs: []string{"--abort-uploads-older-than", "0"}}, source)
		if got := e.uploadKeys(); strings.Join(got, " ") != "live/other.bin" {
			t.Errorf("after a mount with age 0: %q; want only the live upload outside the prefix", got)
		}
	}

	// partfs cleanup.
	{
		e.crashWhileWriting(source, "crashed-again.bin", "data/crashed-again.bin")
		// A staged part a mount left behind, and a key in the stage folder
		// that is not one.
		const staged, other = "data/.partfs-stage/0123456789abcdef.part65", "data/.partfs-stage/notes"
		e.put(staged, []byte("staged"))
		e.put(other, []byte("not staged"))
		args := append([]string{"cleanup"}, e.connArgs()...)

		// Without a terminal and without --yes: list only, and say so.
		out, err := e.runPartfs(append(args, "--older-than", "0", source)...)
		if err != nil || !strings.Contains(out, "data/crashed-again.bin") || !strings.Contains(out, staged) || !strings.Contains(out, "--yes") {
			t.Errorf("cleanup without --yes: %v\n%s", err, out)
		}
		if !e.exists(staged) {
			t.Error("cleanup without --yes deleted a staged part")
		}
		if got := e.uploadKeys(); len(got) != 2 {
			t.Errorf("cleanup without --yes aborted something: %q left", got)
		}
		// --yes with the default age (1h) keeps an upload of seconds ago.
		out, err = e.runPartfs(append(args, "--yes", source)...)
		if err != nil || len(e.uploadKeys()) != 2 {
			t.Errorf("cleanup --yes with the default age: %v, %q left\n%s", err, e.uploadKeys(), out)
		}
		out, err = e.runPartfs(append(args, "--yes", "--older-than", "0", source)...)
		t.Logf("partfs cleanup --yes --older-than 0 %s:\n%s", source, out)
		if err != nil || !strings.Contains(out, "Aborted 1 upload") || !strings.Contains(out, "Deleted 1 staged part") {
			t.Errorf("cleanup --yes: %v\n%s", err, out)
		}
		if e.exists(staged) || !e.exists(other) {
			t.Errorf("after cleanup --yes: staged part exists %v (want false), other key exists %v (want true)", e.exists(staged), e.exists(other))
		}
		if got := e.uploadKeys(); strings.Join(got, " ") != "live/other.bin" {
			t.Errorf("after partfs cleanup --yes: %q; want only the live upload outside the prefix", got)
		}
	}

	// A live mount.
	{
		// A mount on this machine writing a file: cleanup of the whole
		// bucket with age 0 must skip its upload, which it learns from the
		// mount's status socket.
		m := e.mountSource(mountConfig{}, source)
		const key = "data/writing.bin"
		w := startDD(t, m.path("writing.bin"))
		if err := w.feed(testkit.RandomReader(41), 24*miB); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
			return countDone(rs, key, s3proxy.OpUploadPart) >= 1
		}); err != nil {
			t.Fatalf("no part uploaded: %v", err)
		}
		out, err := e.runPartfs(append(append([]string{"cleanup"}, e.connArgs()...), "--yes", "--older-than", "0", source)...)
		if err != nil || !strings.Contains(out, "partfs mount on this machine") {
			t.Errorf("cleanup: %v\n%s", err, out)
		}
		if err := w.feed(testkit.RandomReader(42), 9*miB); err != nil {
			t.Fatal(err)
		}
		if err := w.finish(time.Minute); err != nil {
			t.Fatalf("the write failed after partfs cleanup ran: %v", err)
		}
		e.checkObject(key, w.sum(), 33*miB)
	}

	live.complete()
	if got := e.uploadKeys(); len(got) != 0 {
		t.Errorf("uploads left at the end: %q", got)
	}
}
