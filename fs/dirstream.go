package fs

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/partfs/partfs/store"
)

// READDIRPLUS fetches the metadata of the entries it returns in chunks of
// plusChunk entries, up to plusParallel HEADs at a time. A chunk is about
// what one READDIRPLUS reply holds (the kernel asks for 4 to 32 KiB of
// entries, 25 to 200 of them), so that a program reading a directory
// without stat-ing it (ls, find) wastes little when the kernel switches to
// plain READDIR after the first reply (READDIRPLUS_AUTO, see kernel.go).
// 32 HEADs in flight list 5,000 objects in about 4 s against S3, whose
// HEADs take 20-30 ms, and stay far below its request rate limits.
const (
	plusChunk    = 128
	plusParallel = 32
)

// dirHandle is an open directory. The first entries come from the metadata
// cache's listing of the directory (meta.Cache.ReadDir: every page, up to
// its entry limit, shared with lookups for StatTTL); a directory larger than
// that limit is listed on a page at a time as the kernel asks for entries,
// with the context of the request that needs the page, so an interrupted
// readdir stops waiting on S3.
//
// Entries are numbered in the order produced; an entry's Off is the number of
// the next one, which is what the kernel hands back in seekdir.
type dirHandle struct {
	d *dirNode

	mu      sync.Mutex
	entries []fuse.DirEntry // produced so far; guarded by mu
	info    []entryInfo     // of entries[i], for READDIRPLUS; guarded by mu
	seen    map[string]int  // index of each name in entries; guarded by mu
	next    int             // index of the next entry to return; guarded by mu
	token   string          // continuation token of the next page; guarded by mu
	listed  bool            // every page was fetched; guarded by mu
	local   bool            // local-only files were added; guarded by mu
	started bool            // the first page was asked for; guarded by mu
}

// entryInfo is what READDIRPLUS needs of a listed entry besides its name.
type entryInfo struct {
	kind  entryKind
	obj   store.Object // listedObject: as listed, then as stat'ed
	dir   attrs        // listedDir: the marker's attributes, once known
	known bool         // obj.Metadata or dir is known
	gone  bool         // listedObject: deleted since the listing
}

type entryKind uint8

const (
	otherEntry   entryKind = iota // ".", "..", or a file that is only a state
	listedObject                  // an object in the listing
	listedDir                     // a common prefix in the listing
)

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
// so that a rewound directory shows what changed since (as fresh as the
// metadata cache).
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 {
		h.entries, h.info, h.seen, h.next, h.token = nil, nil, nil, 0, ""
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

// fillLocked produces more entries: "." and ".." and the cached listing
// first, then further pages, then the files that exist only as states.
func (h *dirHandle) fillLocked(ctx context.Context) syscall.Errno {
	switch {
	case !h.started:
		prefix := h.d.prefixNow()
		l, err := h.d.fsys.meta.ReadDir(ctx, prefix)
		if err != nil {
			return h.d.fsys.toErrno("readdir", prefix, err)
		}
		h.started = true
		h.seen = make(map[string]int)
		h.addLocked(".", syscall.S_IFDIR, entryInfo{})
		h.addLocked("..", syscall.S_IFDIR, entryInfo{})
		h.addListedLocked(prefix, l.Objects, l.Prefixes)
		h.token = l.Next
		h.listed = l.Next == ""
		return 0
	case !h.listed:
		return h.pageLocked(ctx)
	default:
		h.local = true
		for name, ch := range h.d.Children() {
			if f, ok := ch.Operations().(*fileNode); ok && f.hasState() {
				h.addLocked(name, syscall.S_IFREG, entryInfo{})
			}
		}
		return 0
	}
}

// pageLocked lists the page after the cached listing's end.
func (h *dirHandle) pageLocked(ctx context.Context) syscall.Errno {
	prefix := h.d.prefixNow()
	page, err := h.d.fsys.opts.Store.List(ctx, prefix, "/", h.token, 0)
	if err != nil {
		return h.d.fsys.toErrno("readdir", prefix, err)
	}
	h.addListedLocked(prefix, page.Objects, page.Prefixes)
	h.token = page.Next
	h.listed = page.Next == ""
	return 0
}

// addListedLocked adds listed objects and prefixes: objects first, so that
// when "name" and "name/..." both exist the file wins, as in Lookup.
func (h *dirHandle) addListedLocked(prefix string, objs []store.Object, prefixes []string) {
	for _, obj := range objs {
		if h.d.fsys.deletingKey(obj.Key) {
			continue // a renamed file's old name, on its way out
		}
		// The directory's own marker has the empty name and is skipped here.
		name := strings.TrimPrefix(obj.Key, prefix)
		h.addLocked(name, h.d.objectType(name), entryInfo{kind: listedObject, obj: obj, known: obj.Metadata != nil})
	}
	for _, p := range prefixes {
		h.addLocked(strings.TrimSuffix(strings.TrimPrefix(p, prefix), "/"), syscall.S_IFDIR, entryInfo{kind: listedDir})
	}
}

func (h *dirHandle) addLocked(name string, mode uint32, info entryInfo) {
	if _, dup := h.seen[name]; dup || (!validName(name) && name != "." && name != "..") || strings.ContainsAny(name, "/\x00") || h.d.reserved(name) {
		return
	}
	h.seen[name] = len(h.entries)
	h.entries = append(h.entries, fuse.DirEntry{
		Name: name,
		Mode: mode,
		Off:  uint64(len(h.entries) + 1),
	})
	h.info = append(h.info, info)
}

var _ = (fusefs.FileLookuper)((*dirHandle)(nil))

// Lookup answers READDIRPLUS, which go-fuse serves by looking up every entry
// it returns. Done one by one that would be one HEAD after another; instead
// the metadata of the entries is fetched a chunk at a time with HEADs in
// parallel (through the metadata cache, which knows the versions it has
// seen, so a listed object it knows costs nothing), and each entry is
// answered from that. S3 listings carry no user metadata, and stat must
// report the stored mode, owner and mtime (rsync -a compares the mtime), so
// the listing alone cannot answer. Entries that are not in a listing (files
// that exist only as states) are looked up as LOOKUP would.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d := h.d
	if ch := d.GetChild(name); ch != nil {
		if f, ok := ch.Operations().(*fileNode); ok && f.hasState() {
			f.fillEntry(out)
			return ch, 0
		}
	}
	info, errno := h.entryInfo(ctx, name)
	if errno != 0 {
		return nil, errno
	}
	switch {
	case info.kind == listedObject && info.gone:
		return nil, syscall.ENOENT
	case info.kind == listedObject:
		return d.objectChild(ctx, name, info.obj, out), 0
	case info.kind == listedDir:
		prefix, errno := d.childKey(name)
		if errno != 0 {
			return nil, errno
		}
		return d.dirChild(ctx, prefix+"/", name, info.dir, out), 0
	}
	return d.Lookup(ctx, name, out)
}

// entryInfo returns what is known of the entry name, fetching the
// metadata of the chunk of entries from it on when it is not known.
func (h *dirHandle) entryInfo(ctx context.Context, name string) (entryInfo, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.seen[name]
	if !ok {
		return entryInfo{}, 0
	}
	if h.info[i].kind != otherEntry && !h.info[i].known {
		if err := h.resolveLocked(ctx, i, min(i+plusChunk, len(h.info))); err != nil {
			return entryInfo{}, h.d.fsys.toErrno("readdir", h.d.prefixNow(), err)
		}
	}
	return h.info[i], 0
}

// resolveLocked fetches what READDIRPLUS needs of the entries [from, to)
// that are not known yet, in parallel.
func (h *dirHandle) resolveLocked(ctx context.Context, from, to int) error {
	fsys := h.d.fsys
	prefix := h.d.prefixNow()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(plusParallel)
	for i := from; i < to; i++ {
		info := &h.info[i] // each goroutine writes its own element only
		if info.kind == otherEntry || info.known {
			continue
		}
		name := h.entries[i].Name
		g.Go(func() error {
			if info.kind == listedDir {
				a, err := markerAttrs(gctx, fsys, prefix+name+"/")
				info.dir, info.known = a, err == nil
				return err
			}
			obj, err := fsys.stat(gctx, prefix+name)
			switch {
			case err == nil:
				info.obj = obj
			case errors.Is(err, fs.ErrNotExist):
				info.gone = true
			default:
				return err
			}
			info.known = true
			return nil
		})
	}
	return g.Wait()
}

// markerAttrs returns the attributes of the directory prefix, which is
// known to exist: from its marker object, or the defaults without one.
func markerAttrs(ctx context.Context, fsys *filesystem, prefix string) (attrs, error) {
	a := defaultDirAttrs(fsys)
	marker, err := fsys.stat(ctx, prefix)
	switch {
	case err == nil:
		a.mtime, a.atime, a.ctime = marker.LastModified, marker.LastModified, marker.LastModified
		return a.withMetadata(marker.Metadata), nil
	case errors.Is(err, fs.ErrNotExist):
		return a, nil
	}
	return a, err
}
