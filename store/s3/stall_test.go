package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/s3"
)

// stallTimeout is the IOTimeout of these tests; the bounds they check are
// generous multiples of it, catching a hang, not measuring speed.
const stallTimeout = time.Second

// proxied returns a store talking to MinIO through a fresh fault proxy,
// with a short IOTimeout.
func proxied(t *testing.T) (*s3.Store, *s3proxy.Proxy) {
	t.Helper()
	srv := miniotest.Shared(t)
	p := s3proxy.Start(t, srv.Endpoint)
	opts := options(t, srv)
	opts.Endpoint = p.URL()
	opts.IOTimeout = stallTimeout
	opts.ResponseHeaderTimeout = 3 * stallTimeout
	return newStore(t, opts), p
}

func randomBody(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// onFirst applies f to the first request of op and forwards the others.
func onFirst(op string, f s3proxy.Fault) s3proxy.FaultFunc {
	done := make(chan struct{}, 1)
	done <- struct{}{}
	return func(r *s3proxy.Request) s3proxy.Fault {
		if r.Op != op {
			return s3proxy.Fault{}
		}
		select {
		case <-done:
			return f
		default:
			return s3proxy.Fault{}
		}
	}
}

// A request whose connection goes silent fails as transient within a few
// IOTimeouts, in each phase: a body never read, an answer never sent, a
// GET body that stops half-way.
func TestStalledRequestsFailTransient(t *testing.T) {
	st, p := proxied(t)
	ctx := context.Background()
	small := randomBody(t, 64<<10)
	big := randomBody(t, 16<<20) // more than loopback socket buffers hold
	obj, err := st.Put(ctx, "obj", big, store.Sum(big), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.CreateMultipart(ctx, "mp", store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.AbortMultipart(context.Background(), "mp", id) })
	cases := []struct {
		name  string
		op    string
		fault s3proxy.Fault
		call  func() error
	}{
		{"blackholed small put", "PutObject", s3proxy.Blackhole(0), func() error {
			_, err := st.Put(ctx, "k", small, store.Sum(small), store.PutOptions{})
			return err
		}},
		{"blackholed large part", "UploadPart", s3proxy.Blackhole(0), func() error {
			_, err := st.UploadPart(ctx, "mp", id, 1, big, store.Sum(big))
			return err
		}},
		{"blackholed stat", "HeadObject", s3proxy.Blackhole(0), func() error {
			_, err := st.Stat(ctx, "obj")
			return err
		}},
		{"stalled GET body", "GetObject", s3proxy.StallResponse(100<<10, 0), func() error {
			_, err := store.ReadAt(ctx, st, "obj", obj.ETag, make([]byte, len(big)), 0)
			return err
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Without a watch the call would hang; the deadline turns
			// that into a failure of this test rather than of the run.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.Background(), 20*stallTimeout)
			defer cancel()
			p.SetFault(onFirst(tt.op, tt.fault))
			start := time.Now()
			err := tt.call()
			took := time.Since(start)
			if !errors.Is(err, store.ErrTransient) {
				t.Fatalf("err %v, want ErrTransient", err)
			}
			if took > 10*stallTimeout {
				t.Fatalf("the stall was noticed after %v with IOTimeout %v", took, stallTimeout)
			}
			// The next attempt goes through.
			p.SetFault(nil)
			if err := tt.call(); err != nil {
				t.Fatalf("after the stall: %v", err)
			}
		})
	}
}

// A reader that pauses between reads is not a stalled connection.
func TestPausedReaderIsNotStalled(t *testing.T) {
	st, _ := proxied(t)
	ctx := context.Background()
	data := randomBody(t, 4<<20)
	obj, err := st.Put(ctx, "k", data, store.Sum(data), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, "k", 0, -1, obj.ETag)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	buf := make([]byte, 1<<20)
	for i := 0; ; i++ {
		n, err := rc.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
		if i == 1 {
			time.Sleep(2 * stallTimeout)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d of %d bytes", got.Len(), len(data))
	}
}

// Through WithRetry, a cut and a stalled body resume from the first byte
// not yet read, and a proxy taken down and brought back is ridden out.
func TestResumeThroughFaults(t *testing.T) {
	raw, p := proxied(t)
	st := store.WithRetry(raw, store.RetryOptions{Budget: 30 * time.Second, Base: 50 * time.Millisecond, Max: 200 * time.Millisecond})
	ctx := context.Background()
	data := randomBody(t, 8<<20)
	obj, err := st.Put(ctx, "k", data, store.Sum(data), store.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []s3proxy.Fault{s3proxy.CutResponse(3 << 20), s3proxy.StallResponse(5<<20, 0)} {
		p.Reset()
		p.SetFault(onFirst("GetObject", f))
		got := make([]byte, len(data))
		if _, err := store.ReadAt(ctx, st, "k", obj.ETag, got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%v: %v", f.Kind, err)
		}
		if err := p.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
		gets := p.Ops("GetObject")
		if len(gets) != 2 {
			t.Fatalf("%v: %d GETs, want 2", f.Kind, len(gets))
		}
		if r := gets[1].Header.Get("Range"); r != fmt.Sprintf("bytes=%d-%d", f.After, len(data)-1) {
			t.Fatalf("%v: the second GET asked for %q, want the rest from byte %d", f.Kind, r, f.After)
		}
	}

	p.SetFault(nil)
	p.Down()
	go func() {
		time.Sleep(2 * time.Second)
		p.Up()
	}()
	if _, err := st.Stat(ctx, "k"); err != nil {
		t.Fatalf("stat across a proxy restart: %v", err)
	}
}
