package fs

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions are the kernel-facing choices of a mount.
type MountOptions struct {
	// FsName is the source column of mount(8) and df(1), such as
	// "partfs:bucket/prefix"; default "partfs".
	FsName string
	// AllowOther lets users other than the one mounting use the mount. The
	// kernel then checks permissions against the reported modes
	// (default_permissions), as a shared mount must.
	AllowOther bool
	// DefaultPermissions has the kernel check every access against the
	// modes and owners partfs reports, also without AllowOther.
	DefaultPermissions bool
	// DirectMount mounts with mount(2), which needs root, instead of the
	// fusermount3 helper; go-fuse falls back to the helper if mount(2) fails.
	DirectMount bool
	// MaxRequest is the largest READ and WRITE request the kernel may send,
	// in bytes; default 1 MiB. go-fuse lowers it to what the kernel allows:
	// fs.fuse.max_pages_limit pages (256, 1 MiB, unless raised; kernels
	// without that setting fix 256). READs of a file read through the page
	// cache are also bounded by the kernel's read-ahead
	// (Options.KernelReadAhead).
	MaxRequest int
	// Debug logs every FUSE request and reply to Logger at Debug level.
	Debug bool
	// Logger receives go-fuse's messages; nil discards them.
	Logger *slog.Logger
}

// Server serves one mount of a Root; Mount starts it.
type Server struct {
	fuse *fuse.Server
}

// Unmount asks the kernel to end the mount, through the fusermount3 helper
// when this process may not unmount; it fails while files are open on it.
func (s *Server) Unmount() error { return s.fuse.Unmount() }

// Wait returns once the mount has ended and every request is answered.
func (s *Server) Wait() { s.fuse.Wait() }

// Mount mounts root on dir and serves it in the background. It returns once
// the kernel has the mount, so that the mount point is usable at once. The
// caller ends it with Server.Unmount (or umount(2)) and waits for
// Server.Wait.
func Mount(dir string, root *Root, mo MountOptions) (*Server, error) {
	opts := root.fsys.opts
	logger := mo.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if mo.FsName == "" {
		mo.FsName = "partfs"
	}
	if mo.MaxRequest <= 0 {
		mo.MaxRequest = 1 << 20
	}
	attrTimeout, entryTimeout := opts.AttrTimeout, opts.EntryTimeout
	fuseOpts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      mo.FsName,
			Name:        "partfs",
			AllowOther:  mo.AllowOther,
			DirectMount: mo.DirectMount,
			Debug:       mo.Debug,
			Logger:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
			MaxWrite:    mo.MaxRequest,
			// Background requests are reads ahead and writes; S3 serves
			// many of them in parallel.
			MaxBackground: 64,
			// Have the kernel send O_TRUNC with OPEN instead of a separate
			// SETATTR(size=0), so that a truncating open starts from an
			// empty file without first reading the old object.
			ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC,
			// partfs has no extended attributes: ENOSYS makes the kernel
			// answer ENOTSUP to every xattr call and stop asking, also for
			// the security.capability it would check before every write.
			DisableXAttrs: true,
			// A panic is a bug in partfs: the operation fails with EIO,
			// and the log says so where it is seen, not at Debug.
			PanicHandler: func(v any) fuse.Status {
				logger.Error("internal error: a FUSE operation panicked; it fails with EIO",
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				return fuse.EIO
			},
		},
		AttrTimeout:  &attrTimeout,
		EntryTimeout: &entryTimeout,
		// Report modes as they are, 0 included.
		NullPermissions: true,
		Logger:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if mo.AllowOther || mo.DefaultPermissions {
		fuseOpts.Options = append(fuseOpts.Options, "default_permissions")
	}
	if opts.ReadOnly {
		fuseOpts.DirectMountFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY
		if !mo.DirectMount {
			fuseOpts.Options = append(fuseOpts.Options, "ro")
		}
	}
	root.fsys.kernelOptions(fuseOpts)
	server, err := fuse.NewServer(fusefs.NewNodeFS(root, fuseOpts), dir, &fuseOpts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err
	}
	root.fsys.mounted(dir)
	return &Server{fuse: server}, nil
}

// DirectMountAvailable reports whether this process may mount with mount(2):
// it runs as root.
func DirectMountAvailable() bool { return os.Geteuid() == 0 }
