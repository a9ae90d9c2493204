package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/fs"
	"github.com/partfs/partfs/internal/s3proxy"
)

// TestStagedParts writes a file whose later parts are larger than memory
// may hold whole: with --part-size 5MiB and --write-buffer 20MiB, parts
// 1-64 are 5 MiB and buffered, parts 65 on are 10 MiB, above the quarter
// of the buffer that is buffered whole, and are staged. Each staged part
// must go out as a temporary object in 5 MiB pieces, each with its MD5,
// come into the file with one UploadPartCopy pinned to that object's ETag,
// and be deleted; the file must arrive whole, nothing may be left behind,
// and partfs's memory must stay within the buffer plus the usual
// overhead. The binary runs without the race detector so that its memory
// is what a user would see.
func TestStagedParts(t *testing.T) {
	e := newEnv(t)
	cfg := mountConfig{plain: true, partSize: 5 * miB, writeBuffer: 20 * miB, concurrency: 4}
	m := e.mount(cfg)
	const key = "staged.bin"
	const size = 64*5*miB + 35*miB // parts 65-67 whole, part 68 half
	sum, err := ddStream(t, m.path(key), 21, size, 5*time.Minute)
	if err != nil {
		t.Fatalf("dd: %v", err)
	}
	peak := m.vmHWM()
	e.checkObject(key, sum, size)
	t.Logf("partfs VmHWM %.1f MiB writing %d MiB with --write-buffer 20MiB", float64(peak)/float64(miB), size/miB)
	if limit := cfg.writeBuffer + memoryOverhead; peak > limit {
		t.Errorf("peak RSS %.1f MiB exceeds --write-buffer + overhead = %.1f MiB", float64(peak)/float64(miB), float64(limit)/float64(miB))
	}

	e.settle()
	stagePrefix := fs.StagePrefix("")
	copies := map[int]string{} // part number -> staged key copied in
	var pieces, deletes, stagedCompletes int
	for _, r := range e.proxy.Requests() {
		switch {
		case r.Status/100 != 2:
		case r.Key == key && r.Op == s3proxy.OpUploadPartCopy:
			src := r.Header.Get("X-Amz-Copy-Source")
			if !strings.Contains(src, stagePrefix) || r.Header.Get("X-Amz-Copy-Source-If-Match") == "" {
				t.Errorf("UploadPartCopy %d: source %q, if-match %q; want a staged object, pinned", r.PartNumber, src, r.Header.Get("X-Amz-Copy-Source-If-Match"))
			}
			copies[r.PartNumber] = src
		case strings.HasPrefix(r.Key, stagePrefix) && r.Op == s3proxy.OpUploadPart:
			pieces++
			if !r.ContentMD5Matches() {
				t.Errorf("piece %d of %s: Content-MD5 %q does not match the body", r.PartNumber, r.Key, r.ContentMD5)
			}
			if r.BodySize != 5*miB {
				t.Errorf("piece %d of %s is %d bytes, want 5 MiB", r.PartNumber, r.Key, r.BodySize)
			}
		case strings.HasPrefix(r.Key, stagePrefix) && r.Op == s3proxy.OpCompleteMultipartUpload:
			stagedCompletes++
		case strings.HasPrefix(r.Key, stagePrefix) && r.Op == s3proxy.OpDeleteObject && !strings.Contains(r.Key, "-probe-"):
			deletes++ // not those of the probe of conditional writes at mount
		}
	}
	if len(copies) != 4 || copies[65] == "" || copies[68] == "" {
		t.Errorf("parts copied in from staged objects: %v, want parts 65-68", copies)
	}
	if pieces != 7 || stagedCompletes != 4 || deletes != 4 {
		t.Errorf("staged objects: %d pieces, %d completed, %d deleted; want 7, 4 and 4", pieces, stagedCompletes, deletes)
	}
	if etag, _ := e.head(key); !strings.HasSuffix(etag, "-68") {
		t.Errorf("ETag %q, want 68 parts", etag)
	}

	prefix := stagePrefix
	left, err := e.s3.ListObjectsV2(e.ctx(), &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Contents) != 0 {
		t.Errorf("%d staged objects left behind, first %q", len(left.Contents), *left.Contents[0].Key)
	}
	if ups := e.uploads(); len(ups) != 0 {
		t.Errorf("%d multipart uploads left behind, first %q", len(ups), *ups[0].Key)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if de.Name() == fs.StageDir {
			t.Errorf("the mount lists %s", fs.StageDir)
		}
	}
}

// TestStagedPartsSSEC stages a part of a file written with a customer key
// (SSE-C): the temporary object's upload and pieces carry the key, the
// UploadPartCopy carries it for both the source and the file, and the file
// reads back with the key.
func TestStagedPartsSSEC(t *testing.T) {
	e, tlsArgs := tlsEnv(t)
	key := newCustomerKey(t)
	keyFile := writeFile0600(t, "sse-c.key", []byte(key.b64+"\n"))
	args := append(append([]string{}, tlsArgs...), "--sse-c-key-file", keyFile)
	m := e.mount(mountConfig{plain: true, partSize: 5 * miB, writeBuffer: 20 * miB, extraArgs: args})
	const name, size = "secret-staged.bin", 64*5*miB + 10*miB // part 65 staged
	sum, err := ddStream(t, m.path(name), 22, size, 5*time.Minute)
	if err != nil {
		t.Fatalf("dd: %v", err)
	}
	e.settle()
	stagePrefix := fs.StagePrefix("")
	var staged, copies int
	for _, r := range e.proxy.Requests() {
		switch {
		case r.Status/100 != 2:
		case strings.HasPrefix(r.Key, stagePrefix) && (r.Op == s3proxy.OpCreateMultipartUpload || r.Op == s3proxy.OpUploadPart):
			staged++
			key.checkHeaders(t, r)
		case r.Key == name && r.Op == s3proxy.OpUploadPartCopy:
			copies++
			key.checkHeaders(t, r)
			if r.Header.Get("X-Amz-Copy-Source-Server-Side-Encryption-Customer-Key") != key.b64 {
				t.Errorf("UploadPartCopy %d: no customer key for the copy source", r.PartNumber)
			}
		}
	}
	if staged != 3 || copies != 1 {
		t.Errorf("%d staged create and pieces, %d copies; want 3 and 1", staged, copies)
	}
	checkSSECObject(t, e, name, key, sum, size)
}
