package fs

import (
	"context"
	"maps"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

// User metadata keys (x-amz-meta-*), the names s3fs uses so that a bucket
// written by one reads right in the other. The formats are s3fs's as well:
//
//   - mode: the full st_mode in decimal, file type bits included, as s3fs
//     writes it with std::to_string(mode): "33188" is a regular file 0644,
//     "16877" a directory 0755. Only the permission bits (07777) are used
//     here; the type comes from the key.
//   - uid, gid: decimal integers.
//   - mtime: seconds since the Unix epoch in decimal ("1700000000"). s3fs
//     also reads a fractional part after a '.', which rclone writes; it is
//     accepted and dropped, as partfs keeps whole seconds everywhere, so a
//     stat after a remount reports exactly what a stat before it did.
const (
	metaMode  = "mode"
	metaUID   = "uid"
	metaGID   = "gid"
	metaMtime = "mtime"
)

// attrs are the POSIX attributes partfs keeps for a node.
type attrs struct {
	perm     uint32 // permission bits only
	uid, gid uint32
	mtime    time.Time // whole seconds
}

func defaultFileAttrs(fsys *filesystem, lastModified time.Time) attrs {
	return attrs{perm: fsys.opts.FileMode, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: lastModified.Truncate(time.Second)}
}

func defaultDirAttrs(fsys *filesystem) attrs {
	return attrs{perm: fsys.opts.DirMode, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: fsys.mountTime}
}

// newAttrs are the attributes of a node created now by the caller of ctx.
func newAttrs(ctx context.Context, fsys *filesystem, mode uint32) attrs {
	a := attrs{perm: mode & 0o7777, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: time.Now().Truncate(time.Second)}
	if caller, ok := fuse.FromContext(ctx); ok {
		a.uid, a.gid = caller.Uid, caller.Gid
	}
	return a
}

// withMetadata returns a with the values found in md replacing its own;
// values that do not parse are ignored.
func (a attrs) withMetadata(md store.Metadata) attrs {
	if v, ok := parseUint(md[metaMode]); ok {
		a.perm = uint32(v) & 0o7777
	}
	if v, ok := parseUint(md[metaUID]); ok {
		a.uid = uint32(v)
	}
	if v, ok := parseUint(md[metaGID]); ok {
		a.gid = uint32(v)
	}
	if s, _, _ := strings.Cut(md[metaMtime], "."); s != "" {
		if sec, err := strconv.ParseInt(s, 10, 64); err == nil && sec > 0 {
			a.mtime = time.Unix(sec, 0)
		}
	}
	return a
}

func parseUint(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return v, err == nil
}

// metadata returns base (which is not modified) with a's values set, for a
// node of type typ (syscall.S_IFREG or S_IFDIR). Keys partfs does not own
// are kept, so other tools' metadata survives a rewrite.
func (a attrs) metadata(base store.Metadata, typ uint32) store.Metadata {
	md := make(store.Metadata, len(base)+4)
	maps.Copy(md, base)
	md[metaMode] = strconv.FormatUint(uint64(typ|a.perm), 10)
	md[metaUID] = strconv.FormatUint(uint64(a.uid), 10)
	md[metaGID] = strconv.FormatUint(uint64(a.gid), 10)
	md[metaMtime] = strconv.FormatInt(a.mtime.Unix(), 10)
	return md
}

// fill writes a into out for a node of type typ and the given size.
func (a attrs) fill(out *fuse.Attr, typ uint32, size int64) {
	out.Mode = typ | a.perm
	out.Size = uint64(size)
	out.Blocks = (uint64(size) + 511) / 512
	out.Blksize = 1 << 20 // hint for cp and friends: write in 1 MiB requests
	out.Nlink = 1         // also for directories: "unknown", so find does not prune
	out.Uid, out.Gid = a.uid, a.gid
	sec := uint64(max(a.mtime.Unix(), 0))
	out.Mtime, out.Ctime, out.Atime = sec, sec, sec
	out.Mtimensec, out.Ctimensec, out.Atimensec = 0, 0, 0
}

// setattr applies the mode, owner and time changes of in to a.
func (a attrs) setattr(in *fuse.SetAttrIn) attrs {
	if mode, ok := in.GetMode(); ok {
		a.perm = mode & 0o7777
	}
	if uid, ok := in.GetUID(); ok {
		a.uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		a.gid = gid
	}
	if mtime, ok := in.GetMTime(); ok {
		a.mtime = mtime.Truncate(time.Second)
	}
	return a
}

// contentType guesses a Content-Type from the key's extension, so that
// objects served over HTTP straight from the bucket get a useful one.
func contentType(key string) string {
	return mime.TypeByExtension(path.Ext(key))
}

// dirContentType is what s3fs gives directory markers.
const dirContentType = "application/x-directory"
