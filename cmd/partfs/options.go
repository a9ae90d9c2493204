package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mount(8) and /etc/fstab
//
// `mount -t fuse.partfs SOURCE DIR -o OPTIONS` and fstab lines of type
// fuse.partfs run the helper /sbin/mount.fuse.partfs (libmount looks in
// /sbin, /sbin/fs.d and /sbin/fs, not in PATH) as
//
//	mount.fuse.partfs SOURCE DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
//
// A partfs binary installed under that name (a symbolic link) reads this
// calling convention; see helperArgs. Every flag is also a mount option, with
// "_" standing for "-" (allow_other is --allow-other), and mount(8)'s
// generic options are accepted: ro and rw map to --read-only, the others
// concern mount(8), systemd or the kernel's handling of block devices and are
// ignored.

// ignoredOptions are mount(8)'s generic options that mean nothing to partfs.
var ignoredOptions = map[string]bool{
	"defaults": true, "auto": true, "noauto": true, "user": true, "nouser": true,
	"users": true, "owner": true, "group": true, "_netdev": true, "nofail": true,
	"suid": true, "nosuid": true, "dev": true, "nodev": true, "exec": true, "noexec": true,
	"async": true, "atime": true, "noatime": true, "diratime": true, "nodiratime": true,
	"relatime": true, "norelatime": true, "strictatime": true, "nostrictatime": true,
	"lazytime": true, "nolazytime": true, "silent": true, "loud": true,
}

// ignoredOptionPrefixes start options meant for other programs: systemd
// (x-systemd.automount, x-systemd.requires=…), mount(8) (x-mount.mkdir) and
// fstab comments.
var ignoredOptionPrefixes = []string{"x-", "comment="}

// mountOptions is the -o flag: each comma-separated option sets a flag.
type mountOptions struct {
	fl  *flag.FlagSet
	cfg *config
}

func (o *mountOptions) String() string { return "" }

func (o *mountOptions) Set(list string) error {
	for _, opt := range strings.Split(list, ",") {
		if opt = strings.TrimSpace(opt); opt != "" {
			if err := o.apply(opt); err != nil {
				return err
			}
		}
	}
	return nil
}

// apply sets what one option says.
func (o *mountOptions) apply(opt string) error {
	name, value, hasValue := strings.Cut(opt, "=")
	switch {
	case name == "ro" && !hasValue:
		return o.fl.Set("read-only", "true")
	case name == "rw" && !hasValue:
		return o.fl.Set("read-only", "false")
	case ignoredOptions[name] && !hasValue:
		return nil
	}
	for _, p := range ignoredOptionPrefixes {
		if strings.HasPrefix(opt, p) {
			return nil
		}
	}
	flagName := strings.ReplaceAll(name, "_", "-")
	f := o.fl.Lookup(flagName)
	if f == nil || flagName == "o" {
		o.cfg.unknownOptions = append(o.cfg.unknownOptions, opt)
		return nil
	}
	if !hasValue {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			return fmt.Errorf("option %s needs a value: %s=%s", name, name, strings.ToUpper(flagName))
		}
		value = "true"
	}
	if err := o.fl.Set(flagName, value); err != nil {
		return fmt.Errorf("option %s: %w", opt, err)
	}
	return nil
}

// isMountHelper reports whether the command was run under a mount helper's
// name (mount.partfs, mount.fuse.partfs), as mount(8) runs it.
func isMountHelper(argv0 string) bool {
	return strings.HasPrefix(filepath.Base(argv0), "mount.")
}

// helperArgs turns mount(8)'s calling convention into partfs's own command
// line. fake (-f) asks to check everything and mount nothing; -s becomes
// --sloppy; -n (no mtab) and -v (verbose) need nothing; -t names the type
// mount(8) matched.
func helperArgs(args []string) (out []string, fake bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...), fake, nil
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 == len(args) {
				return nil, false, usageError{fmt.Sprintf("%s needs a value", a)}
			}
			i++
			switch a {
			case "-o":
				out = append(out, "-o", args[i])
			case "-N":
				return nil, false, usageError{"-N (mount in another namespace) is not supported; run partfs inside the namespace"}
			}
		case strings.HasPrefix(a, "-o"):
			out = append(out, "-o", a[2:])
		case strings.HasPrefix(a, "-t"):
		case isHelperFlags(a):
			for _, c := range a[1:] {
				switch c {
				case 'f':
					fake = true
				case 's':
					out = append(out, "--sloppy")
				}
			}
		default:
			out = append(out, a)
		}
	}
	return out, fake, nil
}

// isHelperFlags reports whether a is a group of mount(8)'s one-letter helper
// flags, such as -s or -nv.
func isHelperFlags(a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	return strings.Trim(a[1:], "sfnv") == ""
}

// defaultAbortAge is the default of --abort-uploads-older-than: longer than
// any write should take, short enough that abandoned parts do not cost for
// long.
const defaultAbortAge = 24 * time.Hour

// ageFlag is a flag.Value holding an age: a Go duration, a number of days
// ("7d"), or "off" (stored as -1).
type ageFlag struct{ d *time.Duration }

func (f ageFlag) String() string {
	if f.d == nil {
		return ""
	}
	return formatAge(*f.d)
}

func (f ageFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// parseAge reads an age; "off", "never" and negative ages come back as -1.
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "off", "never", "none", "-1":
		return -1, nil
	case "0":
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid age %q: want a duration such as 90m, 24h or 7d, or off", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid age %q: want a duration such as 90m, 24h or 7d, or off", s)
	}
	if d < 0 {
		return -1, nil
	}
	return d, nil
}

// formatAge writes an age the way parseAge reads it.
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "off"
	case d == 0:
		return "0"
	case d%(24*time.Hour) == 0 && d > 24*time.Hour:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	// "24h0m0s" reads better as "24h".
	str := d.String()
	if strings.HasSuffix(str, "m0s") {
		str = strings.TrimSuffix(str, "0s")
	}
	if strings.HasSuffix(str, "h0m") {
		str = strings.TrimSuffix(str, "0m")
	}
	return str
}
