package s3_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/store"
)

// BenchmarkUploadPart64MiB measures the client's CPU time for one 64 MiB
// UploadPart with and without payload signing (see Options.SignPayload).
// MinIO runs in its own process, so the figure is partfs's share alone.
//
//	go test -run '^$' -bench UploadPart64MiB -benchtime 5x ./store/s3/
func BenchmarkUploadPart64MiB(b *testing.B) {
	srv := miniotest.Shared(b)
	body := make([]byte, 64<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := store.Sum(body)
	for _, sign := range []bool{false, true} {
		b.Run(map[bool]string{false: "unsigned", true: "signed"}[sign], func(b *testing.B) {
			opts := options(b, srv)
			opts.SignPayload = sign
			st := newStore(b, opts)
			ctx := b.Context()
			id, err := st.CreateMultipart(ctx, "bench", store.PutOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			start := cpuTime(b)
			b.ResetTimer()
			for b.Loop() {
				if _, err := st.UploadPart(ctx, "bench", id, 1, body, sum); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			st.AbortMultipart(ctx, "bench", id)
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
