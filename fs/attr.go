package fs

import (
	"context"
	"fmt"
	"maps"
	"mime"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/partfs/partfs/store"
)

// User metadata keys (x-amz-meta-*), the names s3fs uses so that a bucket
// written by one reads right in the other. The formats are s3fs's as well:
//
//   - mode: the full st_mode in decimal, file type bits included, as s3fs
//     writes it with std::to_string(mode): "33188" is a regular file 0644,
//     "16877" a directory 0755. The permission bits (07777) are used for
//     every node; the type bits tell links, FIFOs, sockets and device
//     nodes from regular files (a directory's type comes from its key).
//   - uid, gid: decimal integers.
//   - mtime, atime: seconds since the Unix epoch in decimal
//     ("1700000000"), followed by '.' and nine digits of nanoseconds when
//     those are not zero ("1700000000.250000000"), as s3fs writes them.
//     A missing atime is the mtime.
//   - rdev: the device number of a character or block device node, in
//     decimal as the kernel encodes it (st_rdev), as s3fs writes it.
//
// The ctime is not stored: every change partfs makes to an object (a
// write, chmod, chown, utimes, rename) writes or copies the object, so its
// LastModified is its status change time. s3fs's x-amz-meta-ctime, which
// a copy would carry along unchanged, is not read.
const (
	metaMode  = "mode"
	metaUID   = "uid"
	metaGID   = "gid"
	metaMtime = "mtime"
	metaAtime = "atime"
	metaRdev  = "rdev"
)

// attrs are the POSIX attributes partfs keeps for a node.
type attrs struct {
	perm         uint32 // permission bits only
	uid, gid     uint32
	mtime, atime time.Time
	ctime        time.Time // LastModified, or when this mount changed the node
	rdev         uint32    // device number of a device node
}

func defaultFileAttrs(fsys *filesystem, lastModified time.Time) attrs {
	t := lastModified.Round(0)
	return attrs{perm: fsys.opts.FileMode, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: t, atime: t, ctime: t}
}

func defaultDirAttrs(fsys *filesystem) attrs {
	t := fsys.mountTime
	return attrs{perm: fsys.opts.DirMode, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: t, atime: t, ctime: t}
}

// now is the current time without its monotonic reading, so that attrs
// compare by value.
func now() time.Time { return time.Now().Round(0) }

// newAttrs are the attributes of a node created now by the caller of ctx.
func newAttrs(ctx context.Context, fsys *filesystem, mode uint32) attrs {
	t := now()
	a := attrs{perm: mode & 0o7777, uid: fsys.opts.UID, gid: fsys.opts.GID, mtime: t, atime: t, ctime: t}
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
	if t, ok := parseTime(md[metaMtime]); ok {
		a.mtime, a.atime = t, t
	}
	if t, ok := parseTime(md[metaAtime]); ok {
		a.atime = t
	}
	if v, ok := parseUint(md[metaRdev]); ok {
		a.rdev = uint32(v)
	}
	if a.ctime.IsZero() {
		a.ctime = a.mtime
	}
	return a
}

// since returns a, read from an object, with the ctime of prev, what this
// mount knew before, when that is the same second: LastModified has whole
// seconds, and the ctime this mount set at its own change has nanoseconds,
// which must not go back when the object is read again.
func (a attrs) since(prev attrs) attrs {
	if a.ctime.Equal(prev.ctime.Truncate(time.Second)) {
		a.ctime = prev.ctime
	}
	return a
}

// parseTime reads "seconds[.fraction]"; the fraction has up to nine digits
// of nanoseconds (fewer are a decimal fraction, as rclone writes).
func parseTime(s string) (time.Time, bool) {
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if secs == "" || err != nil || sec < 0 {
		return time.Time{}, false
	}
	var nsec int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		v, err := strconv.ParseUint(frac, 10, 32)
		if err != nil {
			return time.Time{}, false
		}
		nsec = int64(v)
		for range 9 - len(frac) {
			nsec *= 10
		}
	}
	return time.Unix(sec, nsec), true
}

// formatTime writes t as parseTime reads it.
func formatTime(t time.Time) string {
	s := strconv.FormatInt(t.Unix(), 10)
	if ns := t.Nanosecond(); ns != 0 {
		s += fmt.Sprintf(".%09d", ns)
	}
	return s
}

func parseUint(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return v, err == nil
}

// metadata returns base (which is not modified) with a's values set, for a
// node of type typ (syscall.S_IFREG, S_IFDIR, S_IFLNK or a special file's).
// Keys partfs does not own are kept, so other tools' metadata survives a
// rewrite. atime is written only when it differs from mtime (a missing
// atime reads as the mtime), and rdev only for device nodes.
func (a attrs) metadata(base store.Metadata, typ uint32) store.Metadata {
	md := make(store.Metadata, len(base)+6)
	maps.Copy(md, base)
	md[metaMode] = strconv.FormatUint(uint64(typ|a.perm), 10)
	md[metaUID] = strconv.FormatUint(uint64(a.uid), 10)
	md[metaGID] = strconv.FormatUint(uint64(a.gid), 10)
	md[metaMtime] = formatTime(a.mtime)
	delete(md, metaAtime)
	if !a.atime.Equal(a.mtime) {
		md[metaAtime] = formatTime(a.atime)
	}
	delete(md, metaRdev)
	if typ == syscall.S_IFCHR || typ == syscall.S_IFBLK {
		md[metaRdev] = strconv.FormatUint(uint64(a.rdev), 10)
	}
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
	out.Rdev = a.rdev
	out.Mtime, out.Mtimensec = unixTime(a.mtime)
	out.Atime, out.Atimensec = unixTime(a.atime)
	out.Ctime, out.Ctimensec = unixTime(a.ctime)
}

func unixTime(t time.Time) (uint64, uint32) {
	if t.Unix() < 0 {
		return 0, 0
	}
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// setattr applies the mode, owner and time changes of in to a. Any of
// them is a status change, so it sets the ctime too.
func (a attrs) setattr(in *fuse.SetAttrIn) attrs {
	changed := false
	if mode, ok := in.GetMode(); ok {
		a.perm, changed = mode&0o7777, true
	}
	if uid, ok := in.GetUID(); ok {
		a.uid, changed = uid, true
	}
	if gid, ok := in.GetGID(); ok {
		a.gid, changed = gid, true
	}
	if mtime, ok := in.GetMTime(); ok {
		a.mtime, changed = mtime.Round(0), true
	}
	if atime, ok := in.GetATime(); ok {
		a.atime, changed = atime.Round(0), true
	}
	if changed {
		a.ctime = now()
	}
	return a
}

// modified records a change of the contents now: mtime and ctime.
func (a *attrs) modified() {
	t := now()
	a.mtime, a.ctime = t, t
}

// contentType guesses a Content-Type from the key's extension, so that
// objects served over HTTP straight from the bucket get a useful one.
func contentType(key string) string {
	return mime.TypeByExtension(path.Ext(key))
}

// dirContentType is what s3fs gives directory markers.
const dirContentType = "application/x-directory"
