package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/partfs/partfs/internal/s3proxy"
)

// Editing stored objects in place: appends, writes into the middle and
// truncation, each checked against a local model file that went through
// the same commands, with the S3 client and through a second mount.

// putFile stores the file at path as key, directly in MinIO, and returns
// the object's ETag.
func (e *env) putFile(key, path string) string {
	e.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	out, err := e.s3.PutObject(e.ctx(), &s3.PutObjectInput{Bucket: &e.bucket, Key: &key, Body: f})
	if err != nil {
		e.t.Fatalf("put %s: %v", key, err)
	}
	return strings.Trim(*out.ETag, `"`)
}

// checkModel fails unless key holds the bytes of the local file model.
func (e *env) checkModel(t *testing.T, key, model string) {
	t.Helper()
	fi, err := os.Stat(model)
	if err != nil {
		t.Fatal(err)
	}
	e.checkObject(key, fileMD5(t, model), fi.Size())
}

// cmpFiles fails unless cmp finds the two files equal.
func cmpFiles(t testing.TB, want, got string) {
	t.Helper()
	if out, err := run(t, 3*time.Minute, "cmp", want, got); err != nil {
		t.Errorf("cmp %s %s: %v %s", want, got, err, out)
	}
}

// copyRange returns the byte count of an UploadPartCopy's
// x-amz-copy-source-range header, "bytes=FIRST-LAST".
func copyRange(r s3proxy.Request) (int64, error) {
	h := r.Header.Get("X-Amz-Copy-Source-Range")
	first, last, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	a, err1 := strconv.ParseInt(first, 10, 64)
	b, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || err1 != nil || err2 != nil || b < a {
		return 0, fmt.Errorf("UploadPartCopy %d of %s: copy source range %q", r.PartNumber, r.Key, h)
	}
	return b - a + 1, nil
}

// TestAppendLargeObject appends 1 MiB with the shell's >> to a 200 MiB
// object uploaded by another client. The old bytes must be copied inside
// S3 (UploadPartCopy pinned to the old ETag), not sent again: less than
// 10 MiB of UploadPart bodies in all.
func TestAppendLargeObject(t *testing.T) {
	const key, size, tail = "log/big.bin", 200 * miB, miB
	model, _ := urandomFile(t, size)
	appended, _ := urandomFile(t, tail)
	e := newEnv(t)
	oldETag := e.putFile(key, model)
	cfg := mountConfig{}
	m := e.mount(cfg)

	start := time.Now()
	sh(t, 2*time.Minute, `cat "$1" >>"$2"`, appended, m.path(key))
	t.Logf("append 1 MiB to 200 MiB: %v", time.Since(start).Round(time.Millisecond))
	sh(t, time.Minute, `cat "$1" >>"$2"`, appended, model)
	e.checkModel(t, key, model)

	e.settle()
	var sent, copied int64
	copies, completes := 0, 0
	final := map[int]int64{} // part number -> bytes of its last successful attempt
	for _, r := range e.proxy.Requests() {
		if r.Key != key {
			continue
		}
		switch r.Op {
		case s3proxy.OpUploadPart:
			sent += r.BodySize
			if r.Status == 200 {
				final[r.PartNumber] = r.BodySize
			}
		case s3proxy.OpUploadPartCopy:
			if r.Status != 200 {
				continue
			}
			copies++
			if got := r.Header.Get("X-Amz-Copy-Source-If-Match"); strings.Trim(got, `"`) != oldETag {
				t.Errorf("UploadPartCopy %d: x-amz-copy-source-if-match %q, want the old ETag %q", r.PartNumber, got, oldETag)
			}
			n, err := copyRange(r)
			if err != nil {
				t.Error(err)
			}
			copied += n
			final[r.PartNumber] = n
		case s3proxy.OpCompleteMultipartUpload:
			if r.Status == 200 {
				completes++
			}
		}
	}
	t.Logf("%d UploadPartCopy of %.1f MiB, %.1f MiB of UploadPart bodies, %d parts", copies, float64(copied)/float64(miB), float64(sent)/float64(miB), len(final))
	if copies == 0 {
		t.Errorf("no UploadPartCopy: the old data was not copied inside S3; requests:\n%s", e.describe(key))
	}
	if sent >= 10*miB {
		t.Errorf("%.1f MiB of UploadPart bodies for a 1 MiB append, want under 10 MiB; requests:\n%s", float64(sent)/float64(miB), e.describe(key))
	}
	if completes != 1 {
		t.Errorf("%d CompleteMultipartUpload, want 1", completes)
	}
	var total int64
	for _, n := range final {
		total += n
	}
	if total != size+tail {
		t.Errorf("parts add up to %d bytes, want %d", total, size+tail)
	}

	m2 := e.remount(m, cfg)
	if fi, err := os.Stat(m2.path(key)); err != nil || fi.Size() != size+tail {
		t.Fatalf("stat after mounting again: %v, %v; want %d bytes", fi, err, size+tail)
	}
	// The end of the file through the new mount; the S3 client checked all of it.
	got := make([]byte, 2*miB)
	want := make([]byte, 2*miB)
	readAt(t, m2.path(key), got, size+tail-2*miB)
	readAt(t, model, want, size+tail-2*miB)
	if !bytes.Equal(got, want) {
		t.Errorf("the last 2 MiB read through a new mount differ from the model")
	}
	e.checkNoUploads()
}

// readAt fills p from the file at path, starting at off.
func readAt(t testing.TB, path string, p []byte, off int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
}

// TestEditInPlace writes into the middle of a stored file with dd
// conv=notrunc (across a part boundary, at an offset no block size
// divides), then truncates it down and up with truncate -s. After each
// step the object must hold what the same commands made of a local model
// file; mounted again, the file must read back equal to the model. The
// 300 MiB file runs through the build without the race detector, straight
// to MinIO, to keep the test fast.
func TestEditInPlace(t *testing.T) {
	tests := []struct {
		name string
		size int64
		cfg  mountConfig
		// everyStep checks the object after every step, not only at
		// the end (a 300 MiB check costs seconds under the race detector).
		everyStep bool
	}{
		{"20MiB", 20 * miB, mountConfig{}, true},
		{"300MiB", 300 * miB, mountConfig{plain: true, direct: true}, false},
	}
	requireTools(t, "cp", "dd", "truncate", "cmp")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			const key = "edit/file.bin"
			model, _ := urandomFile(t, tt.size)
			patch, _ := urandomFile(t, 3*miB+4097)
			small, _ := urandomFile(t, 100)
			m := e.mount(tt.cfg)
			if err := os.Mkdir(m.path("edit"), 0o755); err != nil {
				t.Fatal(err)
			}
			path := m.path(key)
			start := time.Now()
			if out, err := run(t, 3*time.Minute, "cp", model, path); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			t.Logf("cp %s into the mount: %v", tt.name, time.Since(start).Round(time.Millisecond))
			e.checkModel(t, key, model)

			// Both files go through the same commands.
			both := func(step string, args ...string) {
				t.Helper()
				start := time.Now()
				for _, f := range []string{path, model} {
					a := append([]string(nil), args...)
					for i := range a {
						a[i] = strings.ReplaceAll(a[i], "FILE", f)
					}
					if out, err := run(t, 3*time.Minute, a[0], a[1:]...); err != nil {
						t.Fatalf("%s: %q: %v %s", step, a, err, out)
					}
				}
				t.Logf("%s: %v", step, time.Since(start).Round(time.Millisecond))
				if tt.everyStep {
					e.checkModel(t, key, model)
				}
			}
			// From 1 MiB (and a bit) before the part boundary below the
			// middle to 2 MiB after it; parts are mountConfig's default 8 MiB.
			const partSize = 8 * miB
			mid := tt.size/2/partSize*partSize - miB - 12345
			both("dd conv=notrunc into the middle", "dd", "if="+patch, "of=FILE", "bs=64K",
				"seek="+strconv.FormatInt(mid, 10), "oflag=seek_bytes", "conv=notrunc", "status=none")
			both("dd conv=notrunc near the start", "dd", "if="+small, "of=FILE", "bs=1",
				"seek=5", "conv=notrunc", "status=none")
			down := tt.size*3/5 + 333
			both("truncate down", "truncate", "-s", strconv.FormatInt(down, 10), "FILE")
			up := tt.size + 5*miB + 7
			both("truncate up", "truncate", "-s", strconv.FormatInt(up, 10), "FILE")
			if !tt.everyStep {
				e.checkModel(t, key, model)
			}

			m2 := e.remount(m, tt.cfg)
			if fi, err := os.Stat(m2.path(key)); err != nil || fi.Size() != up {
				t.Fatalf("stat after mounting again: %v, %v; want %d bytes", fi, err, up)
			}
			cmpFiles(t, model, m2.path(key))
			if entries, err := os.ReadDir(filepath.Dir(m2.path(key))); err != nil || len(entries) != 1 {
				t.Errorf("edit/ holds %d entries (%v), want 1", len(entries), err)
			}
			e.checkNoUploads()
		})
	}
}
