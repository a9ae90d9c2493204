package fs

import (
	"strings"
	"time"
	"unicode/utf8"
)

// ConflictSuffix starts the suffix of a conflict copy's name: a file whose
// write lost a race with another client is stored next to the original as
// NAME.partfs-conflict-<UTC time>-<host> (see "Many hosts" in the package
// comment).
const ConflictSuffix = ".partfs-conflict-"

// ConflictKey returns the key of the conflict copy of key written by host at
// t: key + ".partfs-conflict-20261203T085512Z-host". The host name is
// reduced to letters, digits, '-' and '.', and the whole name is cut to fit
// NAME_MAX and S3's key limit, the original name giving way first; "" when
// even one byte of it does not fit.
func ConflictKey(key, host string, t time.Time) string {
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '-'
	}, host)
	if host == "" {
		host = "unknown"
	}
	if len(host) > 64 {
		host = host[:64]
	}
	suffix := ConflictSuffix + t.UTC().Format("20060102T150405Z") + "-" + host
	dir, name := "", key
	if i := strings.LastIndex(key, "/"); i >= 0 {
		dir, name = key[:i+1], key[i+1:]
	}
	room := min(maxNameLen, maxKeyLen-len(dir)) - len(suffix)
	if room < 1 {
		return "" // no name fits: no conflict copy can be kept
	}
	if len(name) > room {
		n := max(room, 0)
		for n > 0 && !utf8.RuneStart(name[n]) {
			n-- // cut at a character, not inside one
		}
		name = name[:n]
	}
	return dir + name + suffix
}
