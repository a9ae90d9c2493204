package integration

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// faultOnce returns a fault hook that applies pick's fault to the first
// attempt of each matching request (by op, key and part number) and lets
// every later attempt through, so retries can succeed.
func faultOnce(op, key string, pick func(part int) s3proxy.Fault) s3proxy.FaultFunc {
	var mu sync.Mutex
	seen := map[int]bool{}
	return func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op != op || r.Key != key {
			return s3proxy.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[r.PartNumber] {
			return s3proxy.Fault{}
		}
		seen[r.PartNumber] = true
		return pick(r.PartNumber)
	}
}

// TestTransientFaults fails the first attempt of most UploadParts (and of a
// small file's PutObject) with a 503, a connection dropped in the middle of
// the body, or an answer lost after the server stored the part. The files
// must still arrive intact, and a re-sent part must carry the same bytes.
func TestTransientFaults(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})

	t.Run("parts", func(t *testing.T) {
		const key, size = "faulty.bin", 64*miB + 5
		e.proxy.SetFault(faultOnce(s3proxy.OpUploadPart, key, func(part int) s3proxy.Fault {
			switch part % 4 {
			case 1:
				return s3proxy.SlowDown()
			case 2:
				return s3proxy.Drop(miB)
			case 3:
				return s3proxy.DropResponse()
			}
			return s3proxy.Fault{}
		}))
		defer e.proxy.SetFault(nil)
		sum, err := ddStream(t, m.path(key), 5, size, 3*time.Minute)
		if err != nil {
			t.Fatalf("dd: %v", err)
		}
		e.checkObject(key, sum, size)
		e.checkMultipart(key, size)
		checkResends(t, e.proxy.Ops(s3proxy.OpUploadPart))
	})

	t.Run("put", func(t *testing.T) {
		const key = "faulty-small.txt"
		e.proxy.SetFault(faultOnce(s3proxy.OpPutObject, key, func(int) s3proxy.Fault { return s3proxy.SlowDown() }))
		defer e.proxy.SetFault(nil)
		want := testkit.RandomBytes(6, 3000)
		if err := os.WriteFile(m.path(key), want, 0o644); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got := e.get(key); !bytes.Equal(got, want) {
			t.Errorf("object %s is %d bytes, want the %d written", key, len(got), len(want))
		}
		e.checkPut(key)
	})
}

// checkResends fails if a part number was sent twice with different
// bytes: every attempt whose body arrived whole must match the others.
func checkResends(t *testing.T, parts []s3proxy.Request) {
	t.Helper()
	type attempt struct {
		header string
		sum    [16]byte
	}
	first := map[string]attempt{}
	faults := map[s3proxy.FaultKind]int{}
	for _, r := range parts {
		faults[r.Fault.Kind]++
		id := r.UploadID + "/" + r.Query.Get("partNumber")
		a := attempt{r.ContentMD5, r.BodyMD5}
		whole := r.ContentLength >= 0 && r.BodySize == r.ContentLength
		prev, ok := first[id]
		switch {
		case !ok:
			if whole {
				first[id] = a
			}
		case prev.header != a.header:
			t.Errorf("part %s re-sent with Content-MD5 %s, first sent with %s", id, a.header, prev.header)
		case whole && prev.sum != a.sum:
			t.Errorf("part %s re-sent with different bytes", id)
		}
	}
	for _, k := range []s3proxy.FaultKind{s3proxy.FaultStatus, s3proxy.FaultDrop, s3proxy.FaultDropResponse} {
		if faults[k] == 0 {
			t.Errorf("no UploadPart met a %v fault; the test did not exercise it", k)
		}
	}
}

// TestUploadAlwaysFails makes every UploadPart fail: close must report the
// failure to the application and no multipart upload may be left behind.
func TestUploadAlwaysFails(t *testing.T) {
	e := newEnv(t)
	// A short budget: the failure is meant to come quickly.
	m := e.mount(mountConfig{extraArgs: []string{"--retry-budget", "5s", "--io-timeout", "2s"}})
	m.dirtyExit = true // partfs reports the file it could not store
	const key = "doomed.bin"
	e.proxy.SetFault(func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op == s3proxy.OpUploadPart {
			return s3proxy.SlowDown()
		}
		return s3proxy.Fault{}
	})

	res := runWriteHelper(t, m.path(key), 7, 24*miB+kiB, 3*time.Minute)
	if res.open != "ok" {
		t.Fatalf("open: %s", res.open)
	}
	if res.close == "ok" {
		t.Fatalf("close succeeded (write: %s) although every UploadPart failed", res.write)
	}
	t.Logf("write: %s; close: %s", res.write, res.close)
	e.settle()
	if len(e.proxy.Ops(s3proxy.OpUploadPart)) == 0 {
		t.Fatal("no UploadPart was attempted")
	}

	// The abort may trail close by a moment; it must not be forgotten.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.uploads()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ups := e.uploads(); len(ups) > 0 {
		t.Errorf("%d multipart uploads left behind after the failed write", len(ups))
	}
	if e.exists(key) {
		t.Errorf("%s exists after every part failed", key)
	}
	if n := len(e.proxy.Ops(s3proxy.OpAbortMultipartUpload)); n == 0 {
		t.Errorf("no AbortMultipartUpload was sent")
	}
}

// TestKillDuringOverwrite kills partfs with SIGKILL while it streams the
// replacement of an existing object: the old object must stay intact, and
// the upload left behind must be listable and abortable. Programs replace
// a file in two ways, both covered: opening it with O_TRUNC (the shell's
// `>`, cp) and opening it, then ftruncate(2) to 0 (dd).
func TestKillDuringOverwrite(t *testing.T) {
	tests := []struct {
		name   string
		writer func(t *testing.T, path string) *writer
	}{
		{"O_TRUNC", func(t *testing.T, path string) *writer {
			return startWriter(t, "sh", "-c", `exec cat >"$1"`, "sh", path)
		}},
		{"ftruncate", func(t *testing.T, path string) *writer {
			return startWriter(t, "dd", "of="+path, "bs=1M", "iflag=fullblock", "status=none")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			const key = "precious.bin"
			old := testkit.RandomBytes(8, 12*miB+7)
			oldETag := e.put(key, old)
			m := e.mount(mountConfig{})
			w := tt.writer(t, m.path(key))
			killWhileUploading(t, e, m, w, key)
			checkUnchanged(t, e, key, old, oldETag)
		})
	}
}

// killWhileUploading feeds w until parts of key have reached the server,
// then kills partfs under it.
func killWhileUploading(t *testing.T, e *env, m *mount, w *writer, key string) {
	t.Helper()
	if err := w.feed(testkit.RandomReader(9), 40*miB); err != nil {
		t.Fatalf("feed the writer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
		return countDone(rs, key, s3proxy.OpUploadPart) >= 1
	}); err != nil {
		t.Fatalf("no part of the new content was uploaded: %v", err)
	}
	m.kill()
	if err := w.finish(30 * time.Second); err == nil {
		t.Errorf("the writer succeeded although partfs was killed under it")
	}
}

// checkUnchanged fails unless key still holds old with ETag oldETag, and
// checks that the uploads left behind can be listed and aborted.
func checkUnchanged(t *testing.T, e *env, key string, old []byte, oldETag string) {
	t.Helper()
	if etag, _ := e.head(key); etag != oldETag {
		t.Errorf("ETag changed from %s to %s; requests:\n%s", oldETag, etag, e.describe(key))
	}
	if got := e.get(key); !bytes.Equal(got, old) {
		t.Errorf("old object damaged: %d bytes, want the original %d", len(got), len(old))
	}
	ups := e.uploads()
	if len(ups) == 0 {
		t.Errorf("no multipart upload listed after the kill, although parts were sent")
	}
	for _, u := range ups {
		if _, err := e.s3.AbortMultipartUpload(e.ctx(), abortInput(e.bucket, u)); err != nil {
			t.Errorf("abort upload left behind: %v", err)
		}
	}
	if ups := e.uploads(); len(ups) > 0 {
		t.Errorf("%d uploads still listed after aborting them", len(ups))
	}
}
