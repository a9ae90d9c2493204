package fs

import (
	"strings"
	"syscall"
)

// StageDir is the name, at the root of a mount, of the folder under which
// the writeback package stages parts too large to buffer whole, as
// temporary objects that last until they are copied into their file
// (writeback.Options.StagePrefix; see StagePrefix). It is not part of the
// file system: listings of the root leave it out, a lookup of it finds
// nothing, and nothing can be made, renamed or removed under that name.
const StageDir = ".partfs-stage"

// StagePrefix returns the stage prefix of a mount of the key prefix
// mounted (Options.Prefix, with or without its final slash).
func StagePrefix(prefix string) string {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix + StageDir + "/"
}

// reserved reports whether name in directory d is the stage folder.
func (d *dirNode) reserved(name string) bool {
	return name == StageDir && d.prefixNow() == d.fsys.opts.Prefix
}

// reservedErrno is what changing the stage folder answers: EPERM, as for a
// name the file system does not let anyone use.
const reservedErrno = syscall.EPERM
