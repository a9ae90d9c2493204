package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/cache"
	"github.com/partfs/partfs/fs"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/s3"
	"github.com/partfs/partfs/writeback"
)

// mounted is a live mount and what is needed to end it well.
type mounted struct {
	cfg    *config
	log    *slog.Logger
	server *fuse.Server
	root   *fs.Root
	cache  *cache.Cache
}

// mount checks the bucket, builds the pieces and mounts. Every error it
// returns is meant for a person, on one line.
func mount(ctx context.Context, cfg *config, log *slog.Logger) (*mounted, error) {
	if err := cfg.checkFiles(); err != nil {
		return nil, err
	}
	bucket, err := s3.New(ctx, s3.Options{
		Bucket:    cfg.Bucket,
		Endpoint:  cfg.Endpoint,
		Region:    cfg.Region,
		Profile:   cfg.Profile,
		PathStyle: cfg.PathStyle,
		CABundle:  cfg.CABundle,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	// CheckBucket has its own timeout (10s), so a wrong endpoint fails fast
	// instead of hanging the first ls.
	if err := bucket.CheckBucket(ctx); err != nil {
		return nil, err
	}
	st := store.WithRetry(bucket, store.RetryOptions{Logger: log})
	w, err := writeback.New(st, writeback.Options{
		PartSize:    cfg.PartSize,
		Concurrency: cfg.UploadConcurrency,
		BufferBytes: cfg.WriteBuffer,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	m := &mounted{cfg: cfg, log: log}
	opts := fs.Options{
		Store:    st,
		Writer:   w,
		Prefix:   cfg.Prefix,
		UID:      cfg.UID,
		GID:      cfg.GID,
		FileMode: cfg.FileMode,
		DirMode:  cfg.DirMode,
		ReadOnly: cfg.ReadOnly,
		Logger:   log,
	}
	if cfg.CacheSize > 0 {
		if m.cache, err = cache.New(st, cache.Options{MaxBytes: cfg.CacheSize, Logger: log}); err != nil {
			return nil, err
		}
		opts.Cache = m.cache
	}
	if m.root, err = fs.New(opts); err != nil {
		return nil, err
	}
	m.server, err = fs.Mount(cfg.Mountpoint, m.root, fs.MountOptions{
		FsName:      fsName(cfg),
		AllowOther:  cfg.AllowOther,
		DirectMount: fs.DirectMountAvailable(),
		Debug:       cfg.Debug,
		Logger:      log,
	})
	if err != nil {
		m.closeCache()
		return nil, fmt.Errorf("mount %s: %w", cfg.Mountpoint, err)
	}
	log.Info("mounted", "bucket", cfg.Bucket, "prefix", cfg.Prefix, "mountpoint", cfg.Mountpoint)
	return m, nil
}

// fsName is what mount(8) and df(1) show as the source.
func fsName(cfg *config) string {
	name := "partfs:" + cfg.Bucket + "/" + cfg.Prefix
	// Commas would split the mount options the name travels in.
	return strings.ReplaceAll(strings.TrimSuffix(name, "/"), ",", "_")
}

func (m *mounted) closeCache() {
	if m.cache != nil {
		m.cache.Close()
	}
}

// serve runs until the file system is unmounted, by umount(8) or by SIGINT or
// SIGTERM, and returns the exit status: non-zero when some written data could
// not be stored. A second signal gives up waiting for a busy mount.
func (m *mounted) serve() int {
	defer m.closeCache()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
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
		m.log.Info("unmounting", "signal", sig.String())
		if !m.syncAll() {
			status = 1
		}
		m.unmount()
		select {
		case <-served:
		case sig := <-signals:
			m.log.Error("exiting with the mount still busy", "signal", sig.String(), "unsaved_files", m.root.DirtyCount())
			return 1
		}
	}
	// Writes may have happened between the first sync and the unmount.
	if !m.syncAll() {
		status = 1
	}
	return status
}

// syncAll stores every file with unsaved changes and reports success.
func (m *mounted) syncAll() bool {
	if err := m.root.SyncAll(context.Background()); err != nil {
		m.log.Error("some written data could not be stored", "err", err)
		return false
	}
	return true
}

// unmount unmounts, detaching lazily when files are still open: the kernel
// then ends the mount when the last of them is closed, and serve returns.
func (m *mounted) unmount() {
	err := m.server.Unmount()
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
