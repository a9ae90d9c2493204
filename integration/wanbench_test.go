package integration

// BenchmarkWAN: copying trees of small files into the mount over a slow
// link. Every request, the mount's and the direct client's alike, passes
// through the recording proxy, which waits a fixed latency before it
// forwards the request, as a distant S3 endpoint would make it wait. There,
// what decides the time is how many requests each file costs and how many
// of them are made one after the other, not CPU or bandwidth; so beside the
// times the report gives the requests per file, by S3 operation, split
// into those made while cp or rsync ran and those made after it exited.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/internal/s3proxy"
	"github.com/partfs/partfs/internal/testkit"
	"github.com/partfs/partfs/store"
	s3store "github.com/partfs/partfs/store/s3"
)

// WAN benchmark settings.
const (
	wanLatencyEnv     = "PARTFS_BENCH_LATENCY"   // a time.ParseDuration value
	wanFilesEnv       = "PARTFS_BENCH_WAN_FILES" // a file count
	wanLatency        = 20 * time.Millisecond
	wanSmallFiles     = 1000
	wanSmallSize      = 16 * kiB
	wanSmallDirs      = 10
	wanDirectInFlight = 16
	// wanFastClose is the flag of the fast-close mode: close returns before
	// the file is stored, and an fsync of a directory waits for everything
	// below it.
	wanFastClose = "fast-close"
)

// wanSourceDirs are the directories of Go's source tree that the rsync
// case copies (about 2,900 files).
var wanSourceDirs = []string{"net", "crypto", "internal"}

// wanTree is a tree of regular files on local disk.
type wanTree struct {
	root  string
	files []string // relative to root, sorted
	bytes int64
}

// wanCase is one way of copying a tree into the mount.
type wanCase struct {
	name string // for the report
	slug string // for keys and metric names
	tree *wanTree
	// copy copies the tree into dst, which does not exist yet.
	copy func(b *testing.B, tree *wanTree, dst string, timeout time.Duration) error
}

// wanMode is one way of mounting.
type wanMode struct {
	name, slug string
	args       []string
}

// wanSide is one measured side of one case in one mode.
type wanSide struct {
	took time.Duration // from the start until the files were durable
	app  time.Duration // from the start until cp or rsync exited
	// inApp and after count requests by operation: started before the
	// application exited, and after it (until the mount was unmounted).
	inApp, after map[string]int
	failed       int // requests answered 5xx or not at all
}

// wanRow is one case in one mode: both sides, or none when the mode is not
// available.
type wanRow struct {
	c             wanCase
	mode          wanMode
	unavailable   bool
	mount, direct wanSide
}

// BenchmarkWAN copies 1,000 files of 16 KiB into the mount with cp -r and
// a part of Go's source tree with rsync -a, each in the durable mode (the
// default: close returns once the file is stored) and in the fast-close
// mode, and uploads the same files with store/s3, 16 PutObjects in flight,
// all through the proxy with PARTFS_BENCH_LATENCY (default 20ms) added to
// every request. PARTFS_BENCH_WAN_FILES=N keeps the first N files of each
// tree. It runs once whatever b.N is and prints a report; run it with
// `make bench`.
func BenchmarkWAN(b *testing.B) {
	requireTools(b, "cp", "rsync")
	latency := wanLatencyFromEnv(b)
	limit := wanFilesFromEnv(b)
	fastClose := partfsHasFlag(b, wanFastClose)
	small := wanSmallTree(b, limit)
	source := wanSourceTree(b, limit)

	e := newEnv(b)
	e.proxy.SetFault(func(*s3proxy.Request) s3proxy.Fault { return s3proxy.Delay(latency) })
	st := proxiedStore(b, e)
	cases := []wanCase{
		{name: fmt.Sprintf("cp -r, %d × %d KiB", len(small.files), wanSmallSize/kiB), slug: "cp", tree: small, copy: wanCopy},
		{name: fmt.Sprintf("rsync -a, %d Go sources", len(source.files)), slug: "rsync", tree: source, copy: wanRsync},
	}
	modes := []wanMode{
		{name: "durable", slug: "durable"},
		{name: "fast close", slug: "fast", args: []string{"--" + wanFastClose}},
	}
	var rows []wanRow
	for _, c := range cases {
		for _, mode := range modes {
			row := wanRow{c: c, mode: mode, unavailable: mode.args != nil && !fastClose}
			if !row.unavailable {
				row.mount, row.direct = wanMeasure(b, e, st, c, mode, mountFirst(len(rows)), latency)
			}
			rows = append(rows, row)
		}
	}

	wanReport(os.Stdout, latency, rows)
	for _, r := range rows {
		if r.unavailable {
			continue
		}
		name := r.c.slug + "-" + r.mode.slug
		b.ReportMetric(float64(len(r.c.tree.files))/r.mount.took.Seconds(), name+"-files/s")
		b.ReportMetric(r.direct.took.Seconds()/r.mount.took.Seconds(), name+"-ratio")
	}
}

// wanMeasure runs one case in one mode through the mount and directly, in
// the order asked, and returns both sides.
func wanMeasure(b *testing.B, e *env, st store.Store, c wanCase, mode wanMode, mountFirst bool, latency time.Duration) (mount, direct wanSide) {
	b.Helper()
	prefix := c.slug + "-" + mode.slug
	fmt.Printf("wan: %s, %s: measuring\n", c.name, mode.name)
	if !mountFirst {
		direct = wanDirect(b, e, st, c.tree, "direct-"+prefix, latency)
	}
	mount = wanMount(b, e, c, mode, prefix, latency)
	if mountFirst {
		direct = wanDirect(b, e, st, c.tree, "direct-"+prefix, latency)
	}
	fmt.Printf("wan: %s, %s: mount %.1f s, direct %.1f s\n", c.name, mode.name, mount.took.Seconds(), direct.took.Seconds())
	return mount, direct
}

// wanTimeout bounds one side of a case: forty requests one after the
// other for every file is far more than either side needs.
func wanTimeout(files int, latency time.Duration) time.Duration {
	return 5*time.Minute + time.Duration(files)*40*latency
}

// wanMount mounts in mode, copies c's tree to prefix and returns the
// measurement. The time runs from the start of the copy until it has
// exited and an fsync of the target directory has returned. (sync -f, that
// is syncfs(2), would not do: the kernel asks only virtiofs servers, never
// a FUSE server such as partfs, so it would return at once.) The requests
// are counted until partfs has unmounted, so that those it leaves for later
// are counted too; then the bucket must hold exactly the tree.
func wanMount(b *testing.B, e *env, c wanCase, mode wanMode, prefix string, latency time.Duration) wanSide {
	b.Helper()
	timeout := wanTimeout(len(c.tree.files), latency)
	m := e.mount(mountConfig{plain: true, extraArgs: mode.args})
	e.settle()
	e.proxy.Reset()
	dst := m.path(prefix)
	start := time.Now()
	if err := c.copy(b, c.tree, dst, timeout); err != nil {
		b.Fatalf("%s into the mount (%s): %v", c.name, mode.name, err)
	}
	exited := time.Now()
	if err := fsyncDir(dst); err != nil {
		b.Fatalf("%s (%s): %v", c.name, mode.name, err)
	}
	side := wanSide{took: time.Since(start), app: exited.Sub(start)}
	m.stop()
	side.count(e, exited, latency)
	e.checkTreeStored(prefix, c.tree)
	return side
}

// wanDirect uploads tree to prefix with store/s3, wanDirectInFlight
// PutObjects at a time, each with the metadata partfs would write, and
// returns the measurement: every request counts as the application's.
func wanDirect(b *testing.B, e *env, st store.Store, tree *wanTree, prefix string, latency time.Duration) wanSide {
	b.Helper()
	timeout := wanTimeout(len(tree.files), latency)
	e.settle()
	e.proxy.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(wanDirectInFlight)
	for _, rel := range tree.files {
		g.Go(func() error { return putFile(gctx, st, filepath.Join(tree.root, rel), prefix+"/"+rel) })
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("direct upload of %d files to %s/: %v", len(tree.files), prefix, err)
	}
	side := wanSide{took: time.Since(start)}
	side.app = side.took
	side.count(e, time.Now(), latency)
	e.checkTreeStored(prefix, tree)
	return side
}

// putFile stores the file at path as key with one PutObject.
func putFile(ctx context.Context, st store.Store, path, key string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	md := store.Metadata{
		"mode":  strconv.FormatUint(uint64(fi.Mode().Perm()|0o100000), 10),
		"uid":   strconv.Itoa(os.Getuid()),
		"gid":   strconv.Itoa(os.Getgid()),
		"mtime": strconv.FormatInt(fi.ModTime().Unix(), 10),
	}
	if _, err := st.Put(ctx, key, body, store.Sum(body), store.PutOptions{Metadata: md}); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// count takes the proxy's requests since its last Reset, split at exited,
// and forgets them. Every request answered must have taken at least the
// latency: that is what the benchmark measures.
func (s *wanSide) count(e *env, exited time.Time, latency time.Duration) {
	e.t.Helper()
	e.settle()
	s.inApp, s.after = map[string]int{}, map[string]int{}
	for _, r := range e.proxy.Requests() {
		if r.Start.Before(exited) {
			s.inApp[r.Op]++
		} else {
			s.after[r.Op]++
		}
		if r.Status == 0 || r.Status >= 500 {
			s.failed++
		}
		if took := r.End.Sub(r.Start); r.Status != 0 && took < latency {
			e.t.Fatalf("%s %s was answered after %v, before the latency of %v", r.Op, r.Key, took, latency)
		}
	}
	e.proxy.Reset()
}

// wanCopy is cp -r tree dst.
func wanCopy(b *testing.B, tree *wanTree, dst string, timeout time.Duration) error {
	if out, err := run(b, timeout, "cp", "-r", tree.root, dst); err != nil {
		return fmt.Errorf("cp -r: %v %s", err, out)
	}
	return nil
}

// wanRsync is rsync -a tree/ dst/, which must transfer every file.
func wanRsync(b *testing.B, tree *wanTree, dst string, timeout time.Duration) error {
	out, err := run(b, timeout, "rsync", "-a", "--stats", tree.root+"/", dst+"/")
	if err != nil {
		return fmt.Errorf("rsync -a: %v\n%s", err, out)
	}
	m := rsyncTransferred.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("no transfer count in rsync's statistics:\n%s", out)
	}
	if n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", "")); n != len(tree.files) {
		return fmt.Errorf("rsync -a transferred %s regular files, want %d", m[1], len(tree.files))
	}
	return nil
}

// fsyncDir opens the directory at path and fsyncs it.
func fsyncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return f.Close()
}

// checkTreeStored fails unless the bucket holds, under prefix/, every file
// of tree with its size and nothing else but directory markers.
func (e *env) checkTreeStored(prefix string, tree *wanTree) {
	e.t.Helper()
	want := map[string]int64{}
	for _, rel := range tree.files {
		fi, err := os.Stat(filepath.Join(tree.root, rel))
		if err != nil {
			e.t.Fatal(err)
		}
		want[prefix+"/"+rel] = fi.Size()
	}
	var bad []string
	listPrefix := prefix + "/"
	p := s3.NewListObjectsV2Paginator(e.s3, &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: &listPrefix})
	for p.HasMorePages() {
		page, err := p.NextPage(e.ctx())
		if err != nil {
			e.t.Fatalf("list %s: %v", listPrefix, err)
		}
		for _, obj := range page.Contents {
			key := *obj.Key
			size, ok := want[key]
			switch {
			case !ok && !strings.HasSuffix(key, "/"):
				bad = append(bad, fmt.Sprintf("unexpected object %s", key))
			case ok && size != *obj.Size:
				bad = append(bad, fmt.Sprintf("%s is %d bytes, want %d", key, *obj.Size, size))
			}
			delete(want, key)
		}
	}
	for key := range want {
		bad = append(bad, fmt.Sprintf("%s is missing", key))
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		e.t.Fatalf("the bucket does not hold the tree copied to %s/ (%d problems):\n%s", prefix, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}

// proxiedStore is partfs's own S3 client, talking to MinIO through the
// proxy. Like partfs at mount, it checks the bucket first, so that neither
// side's first measurement includes the client's first request.
func proxiedStore(tb testing.TB, e *env) *s3store.Store {
	tb.Helper()
	st, err := s3store.New(context.Background(), s3store.Options{
		Bucket:    e.bucket,
		Endpoint:  e.proxy.URL(),
		Region:    e.srv.Region,
		PathStyle: true,
		AccessKey: e.srv.AccessKey,
		SecretKey: e.srv.SecretKey,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.CheckBucket(context.Background()); err != nil {
		tb.Fatalf("bucket %s through the proxy: %v", e.bucket, err)
	}
	return st
}

// partfsHasFlag reports whether partfs --help lists the flag name.
func partfsHasFlag(tb testing.TB, name string) bool {
	tb.Helper()
	bin := partfsBinary(tb, false)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		tb.Fatalf("%s --help: %v\n%s", bin, err, out)
	}
	return regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(name) + `(\s|$)`).Match(out)
}

// wanLatencyFromEnv is PARTFS_BENCH_LATENCY, or wanLatency when unset.
func wanLatencyFromEnv(tb testing.TB) time.Duration {
	tb.Helper()
	v := os.Getenv(wanLatencyEnv)
	if v == "" {
		return wanLatency
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		tb.Fatalf("%s=%q: want a duration such as 20ms or 0", wanLatencyEnv, v)
	}
	return d
}

// wanFilesFromEnv is PARTFS_BENCH_WAN_FILES, or 0 (no limit) when unset.
func wanFilesFromEnv(tb testing.TB) int {
	tb.Helper()
	v := os.Getenv(wanFilesEnv)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a number of files, at least 1", wanFilesEnv, v)
	}
	return n
}

// wanSmallTree writes wanSmallFiles files of wanSmallSize random bytes, in
// wanSmallDirs directories, and keeps the first limit of them (0: all).
func wanSmallTree(tb testing.TB, limit int) *wanTree {
	tb.Helper()
	tree := &wanTree{root: filepath.Join(tb.TempDir(), "small")}
	perDir := wanSmallFiles / wanSmallDirs
	for i := range wanSmallFiles {
		if limit > 0 && i >= limit {
			break
		}
		rel := fmt.Sprintf("d%02d/f%03d", i/perDir, i%perDir)
		path := filepath.Join(tree.root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, testkit.RandomBytes(uint64(100+i), wanSmallSize), 0o644); err != nil {
			tb.Fatal(err)
		}
		tree.files = append(tree.files, rel)
		tree.bytes += wanSmallSize
	}
	return tree
}

// wanSourceTree copies the regular files of wanSourceDirs in Go's source
// tree, the first limit of them in sorted order (0: all), into a temporary
// directory, keeping their modes and modification times.
func wanSourceTree(tb testing.TB, limit int) *wanTree {
	tb.Helper()
	goroot, err := run(tb, time.Minute, goTool(), "env", "GOROOT")
	if err != nil {
		tb.Fatalf("go env GOROOT: %v %s", err, goroot)
	}
	src := filepath.Join(goroot, "src")
	var files []string
	for _, dir := range wanSourceDirs {
		err := filepath.WalkDir(filepath.Join(src, dir), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(src, path)
				files = append(files, rel)
			}
			return err
		})
		if err != nil {
			tb.Fatalf("walk Go's source tree: %v", err)
		}
	}
	sort.Strings(files)
	if limit > 0 && len(files) > limit {
		files = files[:limit]
	}
	tree := &wanTree{root: filepath.Join(tb.TempDir(), "go"), files: files}
	for _, rel := range files {
		n, err := copyKeepingTimes(filepath.Join(src, rel), filepath.Join(tree.root, rel))
		if err != nil {
			tb.Fatal(err)
		}
		tree.bytes += n
	}
	return tree
}

// copyKeepingTimes copies the regular file from to the new file to, with
// its permission bits and modification time, and returns its size.
func copyKeepingTimes(from, to string) (int64, error) {
	fi, err := os.Stat(from)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return 0, err
	}
	in, err := os.Open(from)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err = errors.Join(err, out.Close()); err != nil {
		return 0, fmt.Errorf("copy %s: %w", from, err)
	}
	return n, os.Chtimes(to, fi.ModTime(), fi.ModTime())
}

// wanReport prints the table of rows.
func wanReport(w io.Writer, latency time.Duration, rows []wanRow) {
	fmt.Fprintf(w, "\npartfs WAN benchmark\n")
	fmt.Fprintf(w, "machine:  %s\n", machine())
	fmt.Fprintf(w, "settings: every request waits %v at the proxy before it is forwarded (%s); MinIO on loopback, plain HTTP;\n", latency, wanLatencyEnv)
	fmt.Fprintf(w, "          partfs with its default flags (plus --%s in the fast-close rows); direct = store/s3, %d PutObjects in flight\n", wanFastClose, wanDirectInFlight)
	fmt.Fprintf(w, "seconds:  from the start until the files are durable: cp or rsync exited and an fsync of the target directory returned\n")
	fmt.Fprintf(w, "          (direct: the last PutObject answered); app s: until cp or rsync exited\n")
	fmt.Fprintf(w, "ratio = direct seconds / mount seconds (the mount's throughput as a share of the direct client's)\n")
	fmt.Fprintf(w, "req/file: requests per file, started while cp or rsync ran (app) and after it exited, until partfs unmounted (after)\n")
	for i, r := range rows {
		if i == 0 || r.c.slug != rows[i-1].c.slug {
			fmt.Fprintf(w, "tree for %s: %.1f MB in all\n", r.c.name, float64(r.c.tree.bytes)/1e6)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-28s %-10s %-6s %8s %8s %6s %8s %8s %8s\n", "case", "mode", "side", "seconds", "files/s", "ratio", "app s", "req app", "after")
	for _, r := range rows {
		if r.unavailable {
			fmt.Fprintf(w, "%-28s %-10s fast close: not available in this build\n", r.c.name, r.mode.name)
			continue
		}
		n := len(r.c.tree.files)
		fmt.Fprintf(w, "%-28s %-10s %-6s %8.2f %8.1f %6.3f %8.2f %8.2f %8.2f\n", r.c.name, r.mode.name, "mount",
			r.mount.took.Seconds(), float64(n)/r.mount.took.Seconds(), r.direct.took.Seconds()/r.mount.took.Seconds(),
			r.mount.app.Seconds(), perFile(total(r.mount.inApp), n), perFile(total(r.mount.after), n))
		fmt.Fprintf(w, "%-28s %-10s %-6s %8.2f %8.1f %6s %8s %8.2f\n", "", "", "direct",
			r.direct.took.Seconds(), float64(n)/r.direct.took.Seconds(), "", "", perFile(total(r.direct.inApp), n))
		fmt.Fprintf(w, "    mount, in app:  %s\n", opsPerFile(r.mount.inApp, n))
		fmt.Fprintf(w, "    mount, after:   %s\n", opsPerFile(r.mount.after, n))
		fmt.Fprintf(w, "    direct:         %s\n", opsPerFile(r.direct.inApp, n))
		if r.mount.failed+r.direct.failed > 0 {
			fmt.Fprintf(w, "    failed requests (5xx or no answer), retried: mount %d, direct %d\n", r.mount.failed, r.direct.failed)
		}
	}
	fmt.Fprintln(w)
}

func perFile(count, files int) float64 { return float64(count) / float64(files) }

func total(ops map[string]int) int {
	n := 0
	for _, c := range ops {
		n += c
	}
	return n
}

// opsPerFile formats the requests per file of each operation, the most
// frequent first.
func opsPerFile(ops map[string]int, files int) string {
	if len(ops) == 0 {
		return "none"
	}
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Slice(names, func(i, j int) bool {
		if ops[names[i]] != ops[names[j]] {
			return ops[names[i]] > ops[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, op := range names {
		parts[i] = fmt.Sprintf("%s %.2f", op, perFile(ops[op], files))
	}
	return strings.Join(parts, ", ")
}
