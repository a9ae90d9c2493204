package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/store"
)

// Read benchmark settings. The direct baseline fetches like a well-tuned S3
// client: 8 MiB ranged GETs, 8 in flight (against a local MinIO, more or
// larger GETs gain nothing).
const (
	readBenchSize        = 1 * giB
	readBenchCacheSize   = 1280 * miB // holds the 1 GiB file whole
	readBenchChunk       = 8 * miB
	readBenchParallel    = 8
	readBenchBuffer      = 1 * miB // the application's read size, as dd bs=1M
	readBenchRandomSize  = 1 * giB
	readBenchRandomReads = 2000
	readBenchRandomQD    = 16
	readBenchFiles       = 5000
	readBenchHeads       = 32 // HEADs in flight for the direct listing
	readBenchTTFBFiles   = 20
)

// Knobs of the read benchmark, for measuring while tuning the read path.
// readBenchOnlyEnv set to "cold" runs only the 1 GiB cold and warm reads;
// readBenchArgsEnv holds further partfs flags for every mount of the
// benchmark, separated by spaces (e.g. "--max-request 4MiB").
const (
	readBenchOnlyEnv = "PARTFS_BENCH_READ"
	readBenchArgsEnv = "PARTFS_BENCH_ARGS"
)

// BenchmarkRead compares reading through the mount with reading the same
// objects directly with store/s3, against the same MinIO in the same run:
// a 1 GiB object read sequentially on a fresh mount (cold) and again with
// the kernel's pages dropped (warm: from partfs's block cache), 4 KiB
// random reads, ls -l of 5,000 objects and the time to the first byte of a
// file. It runs once whatever b.N is and prints a report; run it with
// `make bench`.
func BenchmarkRead(b *testing.B) {
	e := newEnv(b)
	st := directStore(b, e.srv, e.bucket)
	ctx := context.Background()
	r := readReport{coldOnly: os.Getenv(readBenchOnlyEnv) == "cold"}
	cfg := mountConfig{plain: true, direct: true, extraArgs: []string{"--cache-size", sizeArg(readBenchCacheSize)}}
	cfg.extraArgs = append(cfg.extraArgs, strings.Fields(os.Getenv(readBenchArgsEnv))...)
	r.args = strings.Join(cfg.extraArgs, " ")
	if prof := os.Getenv(benchProfileEnv); prof != "" {
		cfg.extraEnv = append(cfg.extraEnv, "PARTFS_CPUPROFILE="+prof)
	}
	minio := minioPID(b)

	if err := newGenerated(41, readBenchSize).upload(ctx, st, "seq.bin"); err != nil {
		b.Fatal(err)
	}
	if !r.coldOnly {
		if err := newGenerated(42, readBenchRandomSize).upload(ctx, st, "random.bin"); err != nil {
			b.Fatal(err)
		}
		if err := putMany(ctx, st, "many/", readBenchFiles); err != nil {
			b.Fatal(err)
		}
		if err := putMany(ctx, st, "ttfb/", readBenchTTFBFiles); err != nil {
			b.Fatal(err)
		}
		if err := putMany(ctx, st, "ttfb-direct/", readBenchTTFBFiles); err != nil {
			b.Fatal(err)
		}
	}

	r.fresh = calibrateFreshMemory(b)
	var m *mount
	for i := range benchRounds {
		direct := func() sideRun {
			var side sideRun
			r.selfDirect = append(r.selfDirect, usageDuring(b, os.Getpid(), func() {
				r.minioDirect = append(r.minioDirect, usageDuring(b, minio, func() {
					side = runSide(b, func() error { return getParallel(ctx, st, "seq.bin", readBenchSize) })
				}))
			}))
			return side
		}
		var dd sideRun
		if !mountFirst(i) {
			dd = direct()
		}
		if m != nil {
			m.stop()
		}
		m = e.mount(cfg)
		if i == 0 && !r.coldOnly {
			r.ttfbUsage = usageDuring(b, m.pid(), func() {
				r.ttfbMount = median(b, readBenchTTFBFiles, func(i int) error {
					return firstByte(m.path(fmt.Sprintf("ttfb/%05d", i)))
				})
			})
			r.ttfbDirect = median(b, readBenchTTFBFiles, func(i int) error {
				return firstByteDirect(ctx, st, fmt.Sprintf("ttfb-direct/%05d", i))
			})
		}
		var md sideRun
		var u procUsage
		r.selfMount = append(r.selfMount, usageDuring(b, os.Getpid(), func() {
			r.minioMount = append(r.minioMount, usageDuring(b, minio, func() {
				u = usageDuring(b, m.pid(), func() {
					md = runSide(b, func() error { return readAll(m.path("seq.bin")) })
				})
			}))
		}))
		if mountFirst(i) {
			dd = direct()
		}
		r.cold.add(md, dd, u)
	}
	// The last round's mount goes on with the file in its cache.
	dropPages(b, m.path("seq.bin"))
	r.seqWarm, r.warmUsage = timedUsage(b, m.pid(), func() error { return readAll(m.path("seq.bin")) })
	r.peakRSS = m.vmHWM()
	if !r.coldOnly {
		r.otherCases(b, m, st)
	}
	r.peakRSSEnd = m.vmHWM()
	m.stop()

	r.print(os.Stdout)
	mid := r.cold.medianRound()
	b.ReportMetric(mbps(readBenchSize, r.cold.mount[mid]), "cold-MB/s")
	b.ReportMetric(mbps(readBenchSize, r.seqWarm), "warm-MB/s")
	b.ReportMetric(mbps(readBenchSize, r.cold.direct[mid]), "direct-MB/s")
	b.ReportMetric(r.cold.ratio(), "cold-ratio")
	b.ReportMetric(float64(r.peakRSS)/float64(miB), "peak-RSS-MiB")
}

// otherCases measures, on mount m with the 1 GiB file cached, the random
// reads and the listing.
func (r *readReport) otherCases(b *testing.B, m *mount, st store.Store) {
	ctx := context.Background()
	offsets := randomOffsets(43, readBenchRandomSize, readBenchRandomReads)
	r.randMount1, r.rand1Usage = timedUsage(b, m.pid(), func() error {
		return randomReads(m.path("random.bin"), offsets[:readBenchRandomReads/4], 1)
	})
	r.randDirect1 = timed(b, func() error { return randomGets(ctx, st, "random.bin", offsets[:readBenchRandomReads/4], 1) })
	r.randMountQD, r.randQDUsage = timedUsage(b, m.pid(), func() error {
		return randomReads(m.path("random.bin"), offsets[readBenchRandomReads/4:], readBenchRandomQD)
	})
	r.randDirectQD = timed(b, func() error {
		return randomGets(ctx, st, "random.bin", offsets[readBenchRandomReads/4:], readBenchRandomQD)
	})

	r.lsMount, r.lsUsage = timedUsage(b, m.pid(), func() error {
		out, err := run(b, 5*time.Minute, "sh", "-c", "ls -l "+m.path("many")+" | wc -l")
		if err != nil {
			return fmt.Errorf("ls -l: %v %s", err, out)
		}
		if n, _ := strconv.Atoi(out); n != readBenchFiles+1 { // and the "total" line
			return fmt.Errorf("ls -l printed %s lines, want %d", out, readBenchFiles+1)
		}
		return nil
	})
	r.lsDirect = timed(b, func() error { return listAndHead(ctx, st, "many/") })
}

// readReport holds the figures of one read benchmark run.
type readReport struct {
	cold                      paired // the 1 GiB file on a fresh mount, benchRounds rounds
	seqWarm                   time.Duration
	randMount1, randDirect1   time.Duration
	randMountQD, randDirectQD time.Duration
	lsMount, lsDirect         time.Duration
	ttfbMount, ttfbDirect     time.Duration
	peakRSS, peakRSSEnd       int64
	// partfs's usage in the mount side of each case
	warmUsage, rand1Usage, randQDUsage, lsUsage, ttfbUsage procUsage
	fresh                                                  freshMemory
	// MinIO's and this process's (the reader's, the direct client's) usage
	// during each round's mount and direct side
	minioMount, minioDirect []procUsage
	selfMount, selfDirect   []procUsage
	coldOnly                bool   // only the 1 GiB reads ran (readBenchOnlyEnv)
	args                    string // partfs's flags beyond the defaults
}

func (r readReport) print(w io.Writer) {
	iops := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	qd1, qdN := readBenchRandomReads/4, readBenchRandomReads-readBenchRandomReads/4
	fmt.Fprintf(w, "\npartfs read benchmark\n")
	fmt.Fprintf(w, "machine:  %s\n", machine())
	fmt.Fprintf(w, "settings: partfs %s; direct = store/s3 with %d ranged GETs of %d MiB in flight; reads of %d MiB; MinIO on loopback, plain HTTP\n",
		r.args, readBenchParallel, readBenchChunk/miB, readBenchBuffer/miB)
	fmt.Fprintf(w, "%s\n", r.fresh)
	fmt.Fprintf(w, "MB/s are 10^6 bytes per second; ratio = mount / direct (higher is better for the mount)\n")
	fmt.Fprintf(w, "partfs CPU and minor faults: spent by the partfs process in the mount side of the case (time to first byte: all %d files)\n\n", readBenchTTFBFiles)
	fmt.Fprintf(w, "%-40s %14s %14s %7s%s\n", "case", "mount", "direct", "ratio", usageHeader)
	mid := r.cold.medianRound()
	direct := r.cold.direct[mid]
	fmt.Fprintf(w, "%-40s %9.1f MB/s %9.1f MB/s %7.2f%s\n", fmt.Sprintf("1 GiB sequential, cold (median of %d)", benchRounds),
		mbps(readBenchSize, r.cold.mount[mid]), mbps(readBenchSize, direct), r.cold.ratio(), r.cold.usage[mid].columns())
	fmt.Fprintf(w, "  ratio of each round (a fresh mount each), in order: %s\n", r.cold.rounds())
	fmt.Fprintf(w, "%s\n", r.cold.busyLine(readBenchSize))
	fmt.Fprintf(w, "%s\n", r.cpuLine())
	fmt.Fprintf(w, "%-40s %9.1f MB/s %9.1f MB/s %7.2f%s\n", "1 GiB sequential, warm (pages dropped)",
		mbps(readBenchSize, r.seqWarm), mbps(readBenchSize, direct), direct.Seconds()/r.seqWarm.Seconds(), r.warmUsage.columns())
	fmt.Fprintf(w, "%-40s %14s %14s %7.2f\n", "  warm / cold", "", "", r.cold.mount[mid].Seconds()/r.seqWarm.Seconds())
	if r.coldOnly {
		fmt.Fprintf(w, "partfs peak RSS (VmHWM): %.1f MiB after the 1 GiB reads\n\n", float64(r.peakRSS)/float64(miB))
		return
	}
	fmt.Fprintf(w, "%-40s %10.0f IOPS %9.0f IOPS %7.2f%s\n", fmt.Sprintf("4 KiB random reads, 1 at a time (%d)", qd1),
		iops(qd1, r.randMount1), iops(qd1, r.randDirect1), r.randDirect1.Seconds()/r.randMount1.Seconds(), r.rand1Usage.columns())
	fmt.Fprintf(w, "%-40s %10.0f IOPS %9.0f IOPS %7.2f%s\n", fmt.Sprintf("4 KiB random reads, %d at a time (%d)", readBenchRandomQD, qdN),
		iops(qdN, r.randMountQD), iops(qdN, r.randDirectQD), r.randDirectQD.Seconds()/r.randMountQD.Seconds(), r.randQDUsage.columns())
	fmt.Fprintf(w, "%-40s %12.3f s %12.3f s %7.2f%s\n", fmt.Sprintf("ls -l of %d objects (direct: list+HEADs)", readBenchFiles),
		r.lsMount.Seconds(), r.lsDirect.Seconds(), r.lsDirect.Seconds()/r.lsMount.Seconds(), r.lsUsage.columns())
	fmt.Fprintf(w, "%-40s %11.2f ms %11.2f ms %7.2f%s\n", "time to first byte, median (direct: HEAD+GET)",
		float64(r.ttfbMount)/1e6, float64(r.ttfbDirect)/1e6, r.ttfbDirect.Seconds()/r.ttfbMount.Seconds(), r.ttfbUsage.columns())
	fmt.Fprintf(w, "partfs peak RSS (VmHWM): %.1f MiB after the 1 GiB reads, %.1f MiB at the end\n\n",
		float64(r.peakRSS)/float64(miB), float64(r.peakRSSEnd)/float64(miB))
}

// cpuLine splits the median cold round's CPU time per GiB by process:
// MinIO on both sides, partfs on the mount's, and this process, which is
// the reader of the mount (its read(2) calls copy from the page cache and
// start the kernel's read-ahead) or the direct client. Their sum leaves out
// whatever else the machine ran, unlike the machine's line.
func (r readReport) cpuLine() string {
	i := r.cold.medianRound()
	perGiB := func(u procUsage) float64 {
		return (u.user + u.system).Seconds() * float64(giB) / float64(readBenchSize)
	}
	mm, md, u := r.minioMount[i], r.minioDirect[i], r.cold.usage[i]
	sm, sd := r.selfMount[i], r.selfDirect[i]
	return fmt.Sprintf("  CPU per GiB by process: mount side %.2f s = MinIO %.2f + partfs %.2f (user %.2f, sys %.2f) + reader %.2f; direct side %.2f s = MinIO %.2f + client %.2f",
		perGiB(mm)+perGiB(u)+perGiB(sm), perGiB(mm), perGiB(u), perGiB(procUsage{user: u.user}), perGiB(procUsage{system: u.system}), perGiB(sm),
		perGiB(md)+perGiB(sd), perGiB(md), perGiB(sd))
}

// minioPID returns the process id of the MinIO the benchmark runs against:
// the child of this process named minio.
func minioPID(b *testing.B) int {
	b.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, end := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(string(stat[end+1:]))
		if len(fields) < 2 || string(stat[open+1:end]) != "minio" {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			return pid
		}
	}
	b.Fatal("no MinIO process among this process's children")
	return 0
}

// getParallel reads size bytes of key with ranged GETs of readBenchChunk,
// readBenchParallel at a time, and discards them.
func getParallel(ctx context.Context, st store.Store, key string, size int64) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readBenchParallel)
	buffers := make(chan []byte, readBenchParallel)
	for range readBenchParallel {
		buffers <- make([]byte, readBenchChunk)
	}
	for off := int64(0); off < size; off += readBenchChunk {
		g.Go(func() error {
			buf := <-buffers
			defer func() { buffers <- buf }()
			n := min(readBenchChunk, size-off)
			rc, err := st.Get(gctx, key, off, n, "")
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadFull(rc, buf[:n])
			return err
		})
	}
	return g.Wait()
}

// readAll reads the file at path from start to end with reads of
// readBenchBuffer, as dd bs=1M would.
func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, readBenchBuffer)
	for {
		_, err := io.ReadFull(f, buf)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// randomOffsets returns n offsets of 4 KiB reads within size, 4 KiB
// aligned.
func randomOffsets(seed uint64, size int64, n int) []int64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]int64, n)
	for i := range out {
		out[i] = rng.Int64N(size/(4*kiB)) * 4 * kiB
	}
	return out
}

// randomReads reads 4 KiB at each offset of the file at path, qd reads in
// flight, each from its own descriptor as separate threads would.
func randomReads(path string, offsets []int64, qd int) error {
	var next atomic.Int64
	g := new(errgroup.Group)
	for range qd {
		g.Go(func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			buf := make([]byte, 4*kiB)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(offsets)) {
					return nil
				}
				if _, err := f.ReadAt(buf, offsets[i]); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// randomGets is randomReads with 4 KiB ranged GETs.
func randomGets(ctx context.Context, st store.Store, key string, offsets []int64, qd int) error {
	var next atomic.Int64
	g := new(errgroup.Group)
	for range qd {
		g.Go(func() error {
			buf := make([]byte, 4*kiB)
			for {
				i := next.Add(1) - 1
				if i >= int64(len(offsets)) {
					return nil
				}
				rc, err := st.Get(ctx, key, offsets[i], int64(len(buf)), "")
				if err != nil {
					return err
				}
				_, err = io.ReadFull(rc, buf)
				rc.Close()
				if err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// putMany stores n small objects under prefix with the metadata partfs
// writes, 32 at a time.
func putMany(ctx context.Context, st store.Store, prefix string, n int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			key := fmt.Sprintf("%s%05d", prefix, i)
			body := []byte(key)
			md := store.Metadata{"mode": "33188", "uid": "1000", "gid": "1000", "mtime": strconv.Itoa(1700000000 + i)}
			_, err := st.Put(gctx, key, body, store.Sum(body), store.PutOptions{Metadata: md})
			return err
		})
	}
	return g.Wait()
}

// listAndHead is what a client must do to show ls -l of prefix: list it
// and HEAD every object for its metadata, readBenchHeads at a time.
func listAndHead(ctx context.Context, st store.Store, prefix string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readBenchHeads)
	token := ""
	for {
		page, err := st.List(ctx, prefix, "/", token, 0)
		if err != nil {
			return err
		}
		for _, obj := range page.Objects {
			g.Go(func() error {
				_, err := st.Stat(gctx, obj.Key)
				return err
			})
		}
		if token = page.Next; token == "" {
			return g.Wait()
		}
	}
}

// firstByte opens the file at path, not looked up before, and reads its
// first 4 KiB.
func firstByte(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 4*kiB))
	return err
}

// firstByteDirect is firstByte for a client of S3: a HEAD for the size and
// metadata, then a GET of the first 4 KiB.
func firstByteDirect(ctx context.Context, st store.Store, key string) error {
	obj, err := st.Stat(ctx, key)
	if err != nil {
		return err
	}
	rc, err := st.Get(ctx, key, 0, min(obj.Size, 4*kiB), obj.ETag)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// median runs f for 0..n-1 and returns the median duration.
func median(b *testing.B, n int, f func(i int) error) time.Duration {
	b.Helper()
	ds := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if err := f(i); err != nil {
			b.Fatal(err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds[n/2]
}
