package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
)

// TestCopyLargeFile copies a 64 MiB file in with cp: it must arrive
// byte-identical as one multipart upload with checked parts.
func TestCopyLargeFile(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	src, want := randomFile(t, 1, 64*miB)

	if out, err := run(t, 2*time.Minute, "cp", src, m.path("big.bin")); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if got := e.get("big.bin"); !bytes.Equal(got, want) {
		t.Fatalf("object differs from the file copied: %d bytes, want %d", len(got), len(want))
	}
	stats := e.checkMultipart("big.bin", int64(len(want)))
	if stats.parts < 2 {
		t.Errorf("64 MiB went out in %d parts with --part-size 8MiB", stats.parts)
	}
}

// TestStreamingUpload checks that parts reach the server while the writer
// is still writing: dd cannot finish before the test closes its input, and
// the test waits for completed UploadParts before doing so.
func TestStreamingUpload(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	const key, size = "stream.bin", 256 * miB
	w := startDD(t, m.path(key))
	src := testkit.RandomReader(2)

	if err := w.feed(src, 40*miB); err != nil {
		t.Fatalf("feed dd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := e.proxy.WaitFor(ctx, func(rs []s3proxy.Request) bool {
		return countDone(rs, key, s3proxy.OpUploadPart) >= 2
	})
	if err != nil {
		t.Fatalf("no UploadPart completed while dd was still writing (40 MiB written, part size 8 MiB): %v", err)
	}
	if !w.running() {
		t.Fatalf("dd exited before its input was closed: %v", w.finish(0))
	}
	if err := w.feed(src, size-40*miB); err != nil {
		t.Fatalf("feed dd: %v", err)
	}
	if err := w.finish(2 * time.Minute); err != nil {
		t.Fatalf("dd: %v", err)
	}
	e.checkObject(key, w.sum(), size)
	e.checkMultipart(key, size)
}

// countDone counts the successful requests of op on key.
func countDone(rs []s3proxy.Request, key, op string) int {
	n := 0
	for _, r := range rs {
		if r.Key == key && r.Op == op && r.Status == 200 {
			n++
		}
	}
	return n
}

// TestSmallFiles checks that files under one part are a single PutObject
// with Content-MD5, down to an empty file.
func TestSmallFiles(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	for _, size := range []int64{kiB, 0} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("small-%d", size)
			want := testkit.RandomBytes(3, size)
			if err := os.WriteFile(m.path(key), want, 0o644); err != nil {
				t.Fatalf("write %s: %v", key, err)
			}
			if got := e.get(key); !bytes.Equal(got, want) {
				t.Errorf("object %s is %d bytes %q…, want %d bytes", key, len(got), prefix(got), len(want))
			}
			e.checkPut(key)
		})
	}
}

func prefix(b []byte) []byte { return b[:min(len(b), 16)] }

// TestConcurrentWriters writes 8 files of 40 MiB at the same time.
func TestConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	m := e.mount(mountConfig{})
	const files, size = 8, 40 * miB
	writers := make([]*writer, files)
	for i := range files {
		writers[i] = startDD(t, m.path(fmt.Sprintf("f%d", i)))
	}
	errs := make([]error, files)
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() {
			if err := w.feed(testkit.RandomReader(uint64(100+i)), size); err != nil {
				errs[i] = fmt.Errorf("feed dd: %w", err)
			}
			if err := w.finish(3 * time.Minute); err != nil && errs[i] == nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for i := range files {
		key := fmt.Sprintf("f%d", i)
		if errs[i] != nil {
			t.Errorf("writing %s: %v", key, errs[i])
			continue
		}
		e.checkObject(key, writers[i].sum(), size)
		e.checkMultipart(key, size)
	}
}

// TestReadBack reads objects stored by another client through the mount.
func TestReadBack(t *testing.T) {
	e := newEnv(t)
	want := testkit.RandomBytes(4, 20*miB+123)
	e.put("dir/obj.bin", want)
	e.put("top.txt", []byte("hello\n"))
	m := e.mount(mountConfig{})

	entries, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatalf("readdir: %v", err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, fmt.Sprintf("%s dir=%v", de.Name(), de.IsDir()))
	}
	if fmt.Sprint(names) != "[dir dir=true top.txt dir=false]" {
		t.Errorf("readdir = %v, want [dir dir=true top.txt dir=false]", names)
	}
	got, err := os.ReadFile(m.path("dir/obj.bin"))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read %d bytes through the mount, differing from the %d stored", len(got), len(want))
	}
}
