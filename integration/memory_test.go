package integration

import (
	"strings"
	"testing"
	"time"
)

// memoryOverhead is what partfs may use beyond --write-buffer while
// writing. It adds up, measured on linux/amd64: the binary and the Go
// runtime of an idle mount (VmHWM about 17 MiB); go-fuse's request buffers
// (1 MiB each, one per write in flight from a sequential writer); HTTP
// connections and SDK state (a few MiB); and headroom for the garbage
// collector over part buffers that are reused rather than allocated anew.
// 64 MiB covers that with room to spare. It is far below what a file held
// in memory costs (2 GiB here), and below what part buffers allocated per
// part and left to the garbage collector cost: with the default GOGC the
// heap then grows to about twice the live buffers.
const memoryOverhead = 64 * miB

// TestWriteMemoryBounded writes a 2 GiB file and checks partfs's peak RSS
// against --write-buffer plus memoryOverhead. It runs the binary built
// without the race detector, whose shadow memory would swamp the figure,
// and talks to MinIO directly: the recording proxy runs in this test
// process, under the race detector, and would only slow the run down.
func TestWriteMemoryBounded(t *testing.T) {
	e := newEnv(t)
	cfg := mountConfig{plain: true, direct: true, partSize: 8 * miB, writeBuffer: 64 * miB, concurrency: 4}
	m := e.mount(cfg)
	const key, size = "huge.bin", 2 * giB
	idle := m.vmHWM()

	sum, err := ddStream(t, m.path(key), 10, size, 5*time.Minute)
	if err != nil {
		t.Fatalf("dd: %v", err)
	}
	peak := m.vmHWM()
	t.Logf("partfs VmHWM: %.1f MiB idle, %.1f MiB after writing 2 GiB (--write-buffer 64MiB, --part-size 8MiB)",
		float64(idle)/float64(miB), float64(peak)/float64(miB))
	if limit := cfg.writeBuffer + memoryOverhead; peak > limit {
		t.Errorf("peak RSS %.1f MiB exceeds --write-buffer + overhead = %.1f MiB",
			float64(peak)/float64(miB), float64(limit)/float64(miB))
	}
	e.checkObject(key, sum, size)
	if etag, _ := e.head(key); !strings.Contains(etag, "-") {
		t.Errorf("ETag %q is not a multipart ETag", etag)
	}
}
