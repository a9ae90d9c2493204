package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	s3store "github.com/partfs/partfs/store/s3"
)

// Benchmark settings, shared by the mount and the direct uploads so that
// both do the same work.
const (
	benchSeqSize     = 1 * giB
	benchPartSize    = 8 * miB
	benchConcurrency = 4
	benchWriteBuffer = 256 * miB
	benchSmallFiles  = 2000
	benchSmallSize   = 4 * kiB
)

// benchProfileEnv names the file partfs writes a CPU profile to during the
// benchmark (`make bench PROFILE=1` sets it); partfs reads PARTFS_CPUPROFILE.
const benchProfileEnv = "PARTFS_BENCH_CPUPROFILE"

// BenchmarkWrite compares writing through the mount with uploading the same
// bytes directly with store/s3, against the same MinIO in the same run:
// one 1 GiB file written with dd bs=1M, and many 4 KiB files written one
// after the other. It runs once whatever b.N is and prints a report; run it
// with `make bench`.
func BenchmarkWrite(b *testing.B) {
	e := newEnv(b)
	cfg := mountConfig{
		plain:       true,
		direct:      true,
		partSize:    benchPartSize,
		writeBuffer: benchWriteBuffer,
		concurrency: benchConcurrency,
	}
	if prof := os.Getenv(benchProfileEnv); prof != "" {
		cfg.extraEnv = append(cfg.extraEnv, "PARTFS_CPUPROFILE="+prof)
	}
	m := e.mount(cfg)
	st := directStore(b, e.srv, e.bucket)
	src := randomFileStream(b, 11, benchSeqSize)
	small := testkit.RandomBytes(12, benchSmallSize)

	var r benchReport
	r.fresh = calibrateFreshMemory(b)
	for i := range benchRounds {
		direct := func() sideRun {
			return runSide(b, func() error {
				return uploadFile(context.Background(), st, fmt.Sprintf("direct/seq-%d.bin", i), src, benchPartSize, benchConcurrency)
			})
		}
		name := fmt.Sprintf("mount-seq-%d.bin", i)
		mount := func() (side sideRun, u procUsage) {
			u = usageDuring(b, m.pid(), func() {
				side = runSide(b, func() error {
					out, err := run(b, 10*time.Minute, "dd", "if="+src, "of="+m.path(name), "bs=1M", "status=none")
					if err != nil {
						return fmt.Errorf("dd: %v %s", err, out)
					}
					return nil
				})
			})
			return side, u
		}
		var md, dd sideRun
		var u procUsage
		if mountFirst(i) {
			md, u = mount()
			dd = direct()
		} else {
			dd = direct()
			md, u = mount()
		}
		r.seq.add(md, dd, u)
		if _, size := e.head(name); size != benchSeqSize {
			b.Fatalf("%s is %d bytes, want %d", name, size, benchSeqSize)
		}
	}
	r.peakRSS = m.vmHWM()

	r.smallDirect = timed(b, func() error {
		for i := range benchSmallFiles {
			key := fmt.Sprintf("direct/small/%04d", i)
			if _, err := st.Put(context.Background(), key, small, store.Sum(small), store.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := os.Mkdir(m.path("small"), 0o755); err != nil {
		b.Fatal(err)
	}
	r.smallMount, r.smallUsage = timedUsage(b, m.pid(), func() error {
		for i := range benchSmallFiles {
			if err := os.WriteFile(m.path(fmt.Sprintf("small/%04d", i)), small, 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	m.stop()

	r.print(os.Stdout)
	mid := r.seq.medianRound()
	b.ReportMetric(mbps(benchSeqSize, r.seq.mount[mid]), "mount-MB/s")
	b.ReportMetric(mbps(benchSeqSize, r.seq.direct[mid]), "direct-MB/s")
	b.ReportMetric(r.seq.ratio(), "seq-ratio")
	b.ReportMetric(float64(r.peakRSS)/float64(miB), "peak-RSS-MiB")
}

// benchReport holds the figures of one benchmark run.
type benchReport struct {
	seq                     paired // the 1 GiB file, benchRounds rounds
	smallMount, smallDirect time.Duration
	peakRSS                 int64
	smallUsage              procUsage // partfs's, in the mount side
	fresh                   freshMemory
}

func (r benchReport) print(w io.Writer) {
	fmt.Fprintf(w, "\npartfs write benchmark\n")
	fmt.Fprintf(w, "machine:  %s\n", machine())
	fmt.Fprintf(w, "settings: part size %d MiB, upload concurrency %d, write buffer %d MiB; MinIO on loopback, plain HTTP\n",
		benchPartSize/miB, benchConcurrency, benchWriteBuffer/miB)
	fmt.Fprintf(w, "%s\n", r.fresh)
	fmt.Fprintf(w, "MB/s are 10^6 bytes per second; ratio = mount / direct\n")
	fmt.Fprintf(w, "partfs CPU and minor faults: spent by the partfs process while the mount side of the case ran\n\n")
	fmt.Fprintf(w, "%-38s %14s %14s %7s%s\n", "case", "mount", "direct", "ratio", usageHeader)
	mid := r.seq.medianRound()
	fmt.Fprintf(w, "%-38s %9.1f MB/s %9.1f MB/s %7.2f%s\n", fmt.Sprintf("1 GiB file, dd bs=1M (median of %d)", benchRounds),
		mbps(benchSeqSize, r.seq.mount[mid]), mbps(benchSeqSize, r.seq.direct[mid]), r.seq.ratio(), r.seq.usage[mid].columns())
	fmt.Fprintf(w, "  ratio of each round, in order: %s\n", r.seq.rounds())
	fmt.Fprintf(w, "%s\n", r.seq.busyLine(benchSeqSize))
	smallBytes := int64(benchSmallFiles) * benchSmallSize
	fmt.Fprintf(w, "%-38s %9.1f MB/s %9.1f MB/s %7.2f%s\n", fmt.Sprintf("%d files of %d KiB, one by one", benchSmallFiles, benchSmallSize/kiB),
		mbps(smallBytes, r.smallMount), mbps(smallBytes, r.smallDirect), r.smallDirect.Seconds()/r.smallMount.Seconds(), r.smallUsage.columns())
	fmt.Fprintf(w, "%-38s %9.0f /s    %9.0f /s\n", "  files per second",
		float64(benchSmallFiles)/r.smallMount.Seconds(), float64(benchSmallFiles)/r.smallDirect.Seconds())
	fmt.Fprintf(w, "partfs peak RSS (VmHWM) after the 1 GiB file: %.1f MiB\n\n", float64(r.peakRSS)/float64(miB))
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

// timed runs f and returns how long it took; an error fails the benchmark.
func timed(b *testing.B, f func() error) time.Duration {
	b.Helper()
	start := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// directStore is partfs's own S3 client, talking to MinIO directly.
func directStore(tb testing.TB, srv *miniotest.Server, bucket string) *s3store.Store {
	tb.Helper()
	st, err := s3store.New(context.Background(), s3store.Options{
		Bucket:    bucket,
		Endpoint:  srv.Endpoint,
		Region:    srv.Region,
		PathStyle: true,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// uploadFile uploads the file at path as key in parts of partSize, with
// concurrency parts in flight, each carrying its MD5: what partfs does for
// a file written sequentially, without the file system around it.
func uploadFile(ctx context.Context, st store.Store, key, path string, partSize int64, concurrency int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	id, err := st.CreateMultipart(ctx, key, store.PutOptions{})
	if err != nil {
		return err
	}
	nparts := int((fi.Size() + partSize - 1) / partSize)
	parts := make([]store.Part, nparts)
	buffers := make(chan []byte, concurrency)
	for range concurrency {
		buffers <- make([]byte, partSize)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range nparts {
		g.Go(func() error {
			buf := <-buffers
			defer func() { buffers <- buf }()
			off := int64(i) * partSize
			body := buf[:min(partSize, fi.Size()-off)]
			if _, err := f.ReadAt(body, off); err != nil && err != io.EOF {
				return err
			}
			p, err := st.UploadPart(gctx, key, id, int32(i+1), body, store.Sum(body))
			parts[i] = p
			return err
		})
	}
	if err := g.Wait(); err != nil {
		_ = st.AbortMultipart(ctx, key, id)
		return err
	}
	_, err = st.CompleteMultipart(ctx, key, id, parts, store.Condition{})
	return err
}

// randomFileStream writes size pseudo-random bytes to a new file without
// holding them in memory, and returns its path.
func randomFileStream(tb testing.TB, seed uint64, size int64) string {
	tb.Helper()
	path := tb.TempDir() + "/src"
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, testkit.RandomReader(seed), size); err != nil {
		tb.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// machine describes the computer the benchmark ran on.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/float64(1<<20))
		}
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s, %s/%s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH)
}
