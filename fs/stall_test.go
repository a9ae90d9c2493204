package fs

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/store/memstore"
)

// With ReplyLimit, a close whose upload gets no answer returns ETIMEDOUT
// within the limit instead of outliving the kernel's request timeout, and
// the changes stay: the next fsync, once S3 answers, stores them.
func TestReplyLimit(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	m := newMount(t, mem, func(o *Options) { o.ReplyLimit = time.Second })
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" {
			return memstore.Hang
		}
		return nil
	})
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = f.Sync()
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("fsync answered after %v with a 1s limit", took)
	}
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("fsync with S3 silent: %v, want ETIMEDOUT", err)
	}
	mem.SetFault(nil)
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync once S3 answers: %v", err)
	}
	if got := m.object(t, "f"); string(got) != "kept" {
		t.Fatalf("object %q", got)
	}
}
