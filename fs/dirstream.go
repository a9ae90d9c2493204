package fs

import (
	"context"
	"strings"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirHandle is an open directory. It lists the directory a page at a time, as
// the kernel asks for entries, with the context of the request that needs the
// page, so an interrupted readdir stops waiting on S3.
//
// Entries are numbered in the order produced; an entry's Off is the number of
// the next one, which is what the kernel hands back in seekdir.
type dirHandle struct {
	d *dirNode

	mu      sync.Mutex
	entries []fuse.DirEntry // produced so far; guarded by mu
	seen    map[string]bool // names in entries; guarded by mu
	next    int             // index of the next entry to return; guarded by mu
	token   string          // continuation token of the next page; guarded by mu
	listed  bool            // every page was fetched; guarded by mu
	local   bool            // local-only files were added; guarded by mu
	started bool            // the first page was asked for; guarded by mu
}

var _ = (fusefs.FileReaddirenter)((*dirHandle)(nil))

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.next >= len(h.entries) {
		if h.local {
			return nil, 0
		}
		if errno := h.fillLocked(ctx); errno != 0 {
			return nil, errno
		}
	}
	e := h.entries[h.next]
	h.next++
	return &e, 0
}

var _ = (fusefs.FileSeekdirer)((*dirHandle)(nil))

// Seekdir moves to entry off. Offset 0 (rewinddir) starts a fresh listing,
// so that a rewound directory shows what changed since.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 {
		h.entries, h.seen, h.next, h.token = nil, nil, 0, ""
		h.listed, h.local, h.started = false, false, false
		return 0
	}
	for uint64(len(h.entries)) < off && !h.local {
		if errno := h.fillLocked(ctx); errno != 0 {
			return errno
		}
	}
	h.next = int(min(off, uint64(len(h.entries))))
	return 0
}

var _ = (fusefs.FileReleasedirer)((*dirHandle)(nil))

func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}

// fillLocked produces more entries: "." and ".." first, then a page of the
// listing, then the files that exist only as states.
func (h *dirHandle) fillLocked(ctx context.Context) syscall.Errno {
	switch {
	case !h.started:
		h.started = true
		h.seen = make(map[string]bool)
		h.addLocked(".", syscall.S_IFDIR)
		h.addLocked("..", syscall.S_IFDIR)
		return h.pageLocked(ctx)
	case !h.listed:
		return h.pageLocked(ctx)
	default:
		h.local = true
		for name, ch := range h.d.Children() {
			if f, ok := ch.Operations().(*fileNode); ok && f.hasState() && !h.seen[name] {
				h.addLocked(name, syscall.S_IFREG)
			}
		}
		return 0
	}
}

func (h *dirHandle) pageLocked(ctx context.Context) syscall.Errno {
	prefix := h.d.prefixNow()
	page, err := h.d.fsys.opts.Store.List(ctx, prefix, "/", h.token, 0)
	if err != nil {
		return h.d.fsys.toErrno("readdir", prefix, err)
	}
	// Objects before prefixes: when "name" and "name/..." both exist the
	// file wins, as in Lookup.
	for _, obj := range page.Objects {
		// The directory's own marker has the empty name and is skipped here.
		name := strings.TrimPrefix(obj.Key, prefix)
		h.addLocked(name, h.d.objectType(name))
	}
	for _, p := range page.Prefixes {
		h.addLocked(strings.TrimSuffix(strings.TrimPrefix(p, prefix), "/"), syscall.S_IFDIR)
	}
	h.token = page.Next
	h.listed = page.Next == ""
	return 0
}

func (h *dirHandle) addLocked(name string, mode uint32) {
	if h.seen[name] || (!validName(name) && name != "." && name != "..") || strings.ContainsAny(name, "/\x00") {
		return
	}
	h.seen[name] = true
	h.entries = append(h.entries, fuse.DirEntry{
		Name: name,
		Mode: mode,
		Off:  uint64(len(h.entries) + 1),
	})
}
