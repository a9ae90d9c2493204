package fs

import (
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// kernelOptions sets, on the go-fuse options of a mount, the kernel-facing
// choices that follow from Options and from how this package serves
// directories. Mount calls it just before creating the server.
func (fsys *filesystem) kernelOptions(o *fusefs.Options) {
	// READDIRPLUS hands the kernel every entry with its attributes, so
	// that ls -l, find -ls or rsync do not send one LOOKUP per name after
	// reading the directory: dirHandle.Lookup answers it from HEADs sent in
	// parallel. In auto mode the kernel asks for attributes with the first
	// reply, and with later ones only while the program stats the entries
	// it got, so ls and find without -l cost a few HEADs, not one per
	// entry.
	o.DisableReadDirPlus = false
	o.ExtraCapabilities |= fuse.CAP_READDIRPLUS_AUTO
	if t := fsys.opts.NegativeTimeout; t > 0 {
		o.NegativeTimeout = &t
	}
}

// mounted makes the choices that need the live mount: the kernel's
// read-ahead (Options.KernelReadAhead). Mount calls it once the kernel has
// the mount; failing, it leaves the kernel's default and says so at debug
// level, as a mount without root cannot do better.
func (fsys *filesystem) mounted(dir string) {
	if n := fsys.opts.KernelReadAhead; n > 0 {
		if err := setReadAhead(dir, n); err != nil {
			fsys.log.Debug("the kernel's read-ahead stays at its default (128 KiB)", "err", err)
		}
	}
}
