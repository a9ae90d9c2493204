package fs

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestConflictKey(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 55, 12, 0, time.FixedZone("CET", 3600))
	if got, want := ConflictKey("dir/notes.txt", "web-1.example", at), "dir/notes.txt.partfs-conflict-20261203T075512Z-web-1.example"; got != want {
		t.Errorf("ConflictKey = %q, want %q", got, want)
	}
	if got := ConflictKey("f", "a b/c", at); !strings.HasSuffix(got, "-a-b-c") {
		t.Errorf("host with a space and a slash: %q", got)
	}
	long := "d/" + strings.Repeat("é", 200) // 400 bytes: past NAME_MAX with the suffix
	got := ConflictKey(long, "h", at)
	name := got[strings.LastIndex(got, "/")+1:]
	if len(name) > maxNameLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "-h") || !strings.HasPrefix(got, "d/é") {
		t.Errorf("a long name: %d bytes %q", len(name), got)
	}
	deep := strings.Repeat("x/", 500) + "name"
	if got := ConflictKey(deep, "h", at); got != "" {
		t.Errorf("a key too deep for any conflict name: %q, want none", got)
	}
}
