package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/partfs/partfs/cache"
	"github.com/partfs/partfs/fs"
	"github.com/partfs/partfs/metrics"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/s3"
	"github.com/partfs/partfs/writeback"
)

// mounted is a live mount and what is needed to end it well.
type mounted struct {
	cfg     *config
	log     *slog.Logger
	started time.Time
	server  *fs.Server
	root    *fs.Root
	cache   *cache.Cache
	writer  *writeback.Writer
	metrics *metrics.Metrics
	live    *liveUploads

	status     *statusServer
	metricsSrv *http.Server
	metricsURL string
}

// s3Options are the store options for bucket reached through c.
func (c *connConfig) s3Options(bucket string, log *slog.Logger) s3.Options {
	return s3.Options{
		Bucket:    bucket,
		Endpoint:  c.Endpoint,
		Region:    c.Region,
		Profile:   c.Profile,
		PathStyle: c.PathStyle,
		CABundle:  c.CABundle,
		IOTimeout: c.IOTimeout,
		Logger:    log,
	}
}

// retryOptions are the retry options of every store built from c.
func (c *connConfig) retryOptions(log *slog.Logger) store.RetryOptions {
	return store.RetryOptions{Budget: c.RetryBudget, Logger: log}
}

// openBucket configures the S3 store with the mount's encryption and checks
// the bucket.
func openBucket(ctx context.Context, cfg *config, log *slog.Logger) (*s3.Store, error) {
	opts := cfg.connConfig.s3Options(cfg.Bucket, log)
	opts.SSE, opts.SSEKMSKeyID = cfg.SSE, cfg.SSEKMSKeyID
	if cfg.SSECKeyFile != "" {
		key, err := readCustomerKey(cfg.SSECKeyFile)
		if err != nil {
			return nil, err
		}
		// The store keeps the headers it derives; the raw key is not needed
		// once it is built.
		defer clear(key)
		opts.SSECustomerKey = key
		if keyFileExposed(cfg.SSECKeyFile) {
			log.Warn("the SSE-C key file can be read by other users; chmod 600 it", "file", cfg.SSECKeyFile)
		}
	}
	bucket, err := s3.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	// CheckBucket has its own timeout (10s), so a wrong endpoint fails fast
	// instead of hanging the first ls.
	if err := bucket.CheckBucket(ctx); err != nil {
		return nil, err
	}
	return bucket, nil
}

// mount checks the bucket, builds the pieces and mounts. Every error it
// returns is meant for a person, on one line.
func mount(ctx context.Context, cfg *config, log *slog.Logger) (*mounted, error) {
	if err := cfg.checkFiles(); err != nil {
		return nil, err
	}
	kernel := kernelRequestTimeout(os.ReadFile)
	replyLimit := cfg.fitKernelTimeout(kernel)
	if replyLimit > 0 {
		log.Warn("the kernel aborts FUSE requests unanswered for longer than its request timeout; replies are kept within it",
			"kernel_timeout", kernel, "retry_budget", cfg.RetryBudget, "io_timeout", cfg.IOTimeout, "close_fsync_limit", replyLimit)
	}
	bucket, err := openBucket(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	request := fuseRequests(cfg, log)
	m := &mounted{cfg: cfg, log: log, started: time.Now()}
	m.metrics = metrics.New(m.metricsOptions())
	m.live = newLiveUploads(m.metrics.Wrap(bucket))
	retry := cfg.retryOptions(log)
	retry.OnRetry = m.metrics.Retried
	st := store.WithRetry(m.live, retry)
	abortAbandoned(ctx, st, cfg, log)
	conditional, conditionalDelete := false, false
	if cfg.OnConflict != conflictOverwrite && !cfg.ReadOnly {
		conditional, conditionalDelete = probeConditional(ctx, st, cfg, log)
	}
	var conflictKey func(string) string
	if conditional && cfg.OnConflict == conflictCopy {
		host := hostName()
		conflictKey = func(key string) string { return fs.ConflictKey(key, host, time.Now()) }
	}

	if m.writer, err = writeback.New(st, writeback.Options{
		PartSize:    cfg.PartSize,
		Concurrency: cfg.UploadConcurrency,
		BufferBytes: cfg.WriteBuffer,
		StagePrefix: fs.StagePrefix(cfg.Prefix),
		// With fast close nobody waits on a failed upload: its bytes stay
		// for the next sync (close, fsync, unmount).
		KeepUnsent:  cfg.FastClose,
		ConflictKey: conflictKey,
		Logger:      log,
	}); err != nil {
		return nil, err
	}
	opts := fs.Options{
		Store:    st,
		Writer:   m.writer,
		Prefix:   cfg.Prefix,
		UID:      cfg.UID,
		GID:      cfg.GID,
		FileMode: cfg.FileMode,
		DirMode:  cfg.DirMode,
		ReadOnly: cfg.ReadOnly,
		Logger:   log,

		Conditional:       conditional,
		ConditionalDelete: conditionalDelete,
		FastClose:         cfg.FastClose,
		PutConcurrency:    cfg.PutConcurrency,
		UploadDelay:       uploadDelay(cfg.UploadDelay),
		// close and fsync return ETIMEDOUT rather than outlive the
		// kernel's request timeout; their changes stay for a later sync.
		ReplyLimit: replyLimit,
		// The kernel reads ahead as far as one request holds, so that
		// READs are as large as the mount allows.
		KernelReadAhead: request,
		// The kernel keeps attributes and names as long as partfs does.
		StatTTL:         offIfZero(cfg.StatTTL),
		NegativeTTL:     offIfZero(cfg.NegativeTTL),
		AttrTimeout:     offIfZero(cfg.StatTTL),
		EntryTimeout:    offIfZero(cfg.StatTTL),
		NegativeTimeout: offIfZero(cfg.NegativeTTL),
	}
	if cfg.CacheSize > 0 {
		if m.cache, err = cache.New(st, cache.Options{
			MaxBytes:       cfg.CacheSize,
			ReadAheadBytes: cfg.ReadAhead,
			// The kernel's reads ahead arrive out of order by up to twice
			// its read-ahead.
			SequentialSlack: max(4<<20, 4*request),
			Logger:          log,
		}); err != nil {
			return nil, err
		}
		opts.Cache = m.cache
	}
	if m.root, err = fs.New(opts); err != nil {
		m.close()
		return nil, err
	}
	if err := m.startServers(); err != nil {
		m.close()
		return nil, err
	}
	m.server, err = fs.Mount(cfg.Mountpoint, m.root, fs.MountOptions{
		FsName:             fsName(cfg),
		AllowOther:         cfg.AllowOther,
		DefaultPermissions: cfg.DefaultPermissions,
		DirectMount:        fs.DirectMountAvailable(),
		MaxRequest:         int(request),
		Debug:              cfg.Debug,
		Logger:             log,
	})
	if err != nil {
		m.close()
		return nil, fmt.Errorf("mount %s: %w", cfg.Mountpoint, err)
	}
	log.Info("mounted", "bucket", cfg.Bucket, "prefix", cfg.Prefix, "mountpoint", cfg.Mountpoint,
		"fuse_requests", formatSize(request), "metrics", m.metricsURL, "status_socket", m.statusPath())
	return m, nil
}

// fuseRequests returns the size of the mount's FUSE requests: --max-request
// within what the kernel allows, saying so when the kernel keeps them
// smaller.
func fuseRequests(cfg *config, log *slog.Logger) int64 {
	size, limit := requestSize(cfg.MaxRequest, os.ReadFile)
	if size < cfg.MaxRequest {
		log.Warn("the kernel keeps FUSE requests smaller than --max-request; raise its limit before mounting, as root: sysctl fs.fuse.max_pages_limit=PAGES (4 KiB each)",
			"max_request", formatSize(cfg.MaxRequest), "kernel_limit", formatSize(limit))
	}
	return size
}

// metricsOptions points the gauges at the mount's pieces. They are read only
// once the servers run, after mount has set every field.
func (m *mounted) metricsOptions() metrics.Options {
	opts := metrics.Options{
		Logger: m.log,
		WriteBuffer: func() metrics.WriteBuffer {
			s := m.writer.Stats()
			return metrics.WriteBuffer{Total: s.Total, Used: s.Used, Peak: s.Peak, Waiting: s.Waiting, Uploads: s.Uploads}
		},
		DirtyFiles: func() int { return m.root.DirtyCount() },
	}
	if m.cfg.FastClose {
		opts.UploadFailures = func() int64 { return m.root.UploadFailures() }
	}
	opts.Conflicts = func() int64 {
		_, n := m.writer.Conflicts()
		return n
	}
	if m.cfg.CacheSize > 0 {
		opts.Cache = func() metrics.Cache {
			s := m.cache.Stats()
			return metrics.Cache{Hits: s.Hits, Misses: s.Misses, Gets: s.Gets, GetBytes: s.GetBytes}
		}
	}
	return opts
}

// startServers starts the status socket and, with --metrics-addr, the
// metrics endpoint.
func (m *mounted) startServers() error {
	if addr := m.cfg.MetricsAddr; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.metrics.Handler())
		m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		m.metricsURL = "http://" + ln.Addr().String() + "/metrics"
		go m.metricsSrv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.Handler())
	mux.HandleFunc("GET /status", m.serveStatus)
	var err error
	m.status, err = startStatusServer(statusDirs()[0], canonicalMountpoint(m.cfg.Mountpoint), mux)
	var busy alreadyServedError
	switch {
	case errors.As(err, &busy):
		return err
	case err != nil:
		m.log.Warn("partfs status will not find this mount", "err", err)
	}
	return nil
}

func (m *mounted) statusPath() string {
	if m.status == nil {
		return ""
	}
	return m.status.path
}

// serveStatus answers GET /status.
func (m *mounted) serveStatus(w http.ResponseWriter, _ *http.Request) {
	reply := statusReply{
		PID:         os.Getpid(),
		Mountpoint:  m.cfg.Mountpoint,
		Bucket:      m.cfg.Bucket,
		Prefix:      m.cfg.Prefix,
		Endpoint:    m.cfg.Endpoint,
		ReadOnly:    m.cfg.ReadOnly,
		FastClose:   m.cfg.FastClose,
		Encryption:  m.cfg.SSE,
		Started:     m.started,
		MetricsURL:  m.metricsURL,
		Figures:     m.metrics.Snapshot(),
		LiveUploads: m.live.list(),
		Unsaved:     m.writer.Unsaved(),
	}
	reply.Conflicts, reply.ConflictCount = m.writer.Conflicts()
	if m.cfg.SSECKeyFile != "" {
		reply.Encryption = "SSE-C"
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, reply)
}

// fsName is what mount(8) and df(1) show as the source.
func fsName(cfg *config) string {
	name := "partfs:" + cfg.Bucket + "/" + cfg.Prefix
	// Commas would split the mount options the name travels in.
	return strings.ReplaceAll(strings.TrimSuffix(name, "/"), ",", "_")
}

// close stops the servers and the cache.
func (m *mounted) close() {
	if m.status != nil {
		m.status.close()
	}
	if m.metricsSrv != nil {
		m.metricsSrv.Close()
	}
	if m.cache != nil {
		m.cache.Close()
	}
}

// catchSignals starts catching SIGINT and SIGTERM. It must be called before
// mounting: a process killed by a signal's default action while one of its
// own threads waits on its mount (go-fuse opens a file there right after
// mounting) cannot finish exiting, since nobody is left to answer the
// kernel, and leaves a mount that hangs. A signal caught during mount is
// handled by serve as soon as the mount is live.
func catchSignals() chan os.Signal {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	return signals
}

// serve runs until the file system is unmounted, by umount(8) or by SIGINT or
// SIGTERM (from signals, see catchSignals), and returns the exit status:
// non-zero when some written data could not be stored. Every file with
// unsaved changes is stored first. A second signal gives up at once, whatever
// is still being stored or still open.
func (m *mounted) serve(signals <-chan os.Signal) int {
	defer m.close()
	defer startProfile(m.log)()
	stopLimit := make(chan struct{})
	defer close(stopLimit)
	go newMemoryLimit(m.cfg, func() int64 {
		s := m.writer.Stats()
		return s.Used + s.Idle
	}).run(100*time.Millisecond, stopLimit)
	served := make(chan struct{})
	go func() {
		m.server.Wait()
		close(served)
	}()

	status := 0
	select {
	case <-served:
		m.log.Info("unmounted", "mountpoint", m.cfg.Mountpoint)
	case sig := <-signals:
		m.log.Info("storing files with unsaved changes, then unmounting (signal again to exit at once)",
			"signal", sig.String(), "dirty_files", m.root.DirtyCount())
		ok, aborted := m.syncAll(signals)
		if aborted != nil {
			return m.abort(aborted)
		}
		if !ok {
			status = 1
		}
		m.unmount()
		select {
		case <-served:
		case sig := <-signals:
			return m.abort(sig)
		}
	}
	// Writes may have happened between the first sync and the unmount.
	ok, aborted := m.syncAll(signals)
	if aborted != nil {
		return m.abort(aborted)
	}
	if !ok {
		status = 1
	}
	if !m.report() {
		status = 1
	}
	return status
}

// report aborts the uploads left by failed writes that could not be
// aborted then, and names every file whose changes were not stored. It
// returns false when there is any.
func (m *mounted) report() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*m.cfg.IOTimeout)
	defer cancel()
	if left := m.writer.RetryAborts(ctx); len(left) > 0 {
		keys := make([]string, len(left))
		for i, u := range left {
			keys[i] = u.Key
		}
		m.log.Warn("multipart uploads of failed writes could not be aborted; partfs cleanup removes them", "keys", keys)
	}
	unsaved := m.writer.Unsaved()
	if len(unsaved) == 0 {
		return true
	}
	keys := make([]string, len(unsaved))
	for i, u := range unsaved {
		keys[i] = u.Key
	}
	m.log.Error("files written through this mount were NOT stored (their writers were told)", "files", keys)
	return false
}

// syncAll stores every file with unsaved changes and reports success, or
// returns the signal that interrupted it.
func (m *mounted) syncAll(signals <-chan os.Signal) (bool, os.Signal) {
	ctx, cancel := progressContext(context.Background(), m.metrics.Snapshot, m.cfg.stopBound())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.root.SyncAll(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			m.log.Error("some written data could not be stored", "err", err, "unsaved_files", m.root.DirtyKeys())
			return false, nil
		}
		return true, nil
	case sig := <-signals:
		return false, sig
	}
}

// abort ends the process after a second signal. The mount is detached so
// that no dead mount point is left behind; files still open there fail from
// now on.
func (m *mounted) abort(sig os.Signal) int {
	m.log.Error("exiting at once on a second signal: files with unsaved changes are NOT stored; their multipart uploads are left for partfs cleanup",
		"signal", sig.String(), "unsaved_files", m.root.DirtyCount(), "mountpoint", m.cfg.Mountpoint)
	if err := syscall.Unmount(m.cfg.Mountpoint, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		m.log.Error("lazy unmount failed", "mountpoint", m.cfg.Mountpoint, "err", err)
	}
	return 1
}

// unmount unmounts, detaching lazily when files are still open: the kernel
// then ends the mount when the last of them is closed, and serve returns.
func (m *mounted) unmount() {
	// umount(2) answers EBUSY itself; go-fuse's Unmount would retry and
	// then try a fusermount helper, which only mounts made without the
	// privilege to unmount need.
	err := syscall.Unmount(m.cfg.Mountpoint, 0)
	if errors.Is(err, syscall.EPERM) {
		err = m.server.Unmount()
	}
	if err == nil {
		return
	}
	m.log.Warn("mount point busy; detaching it, partfs exits when the last open file is closed (signal again to exit now)",
		"mountpoint", m.cfg.Mountpoint, "err", err)
	if err := syscall.Unmount(m.cfg.Mountpoint, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		m.log.Error("lazy unmount failed", "mountpoint", m.cfg.Mountpoint, "err", err)
	}
}

// newLogger returns the text logger for a foreground process.
func newLogger(cfg *config) *slog.Logger {
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// oneLine makes an error fit the single line of a failed mount.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// uploadDelay is --upload-delay for fs.Options, where zero means the
// default and a negative value none.
func uploadDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
