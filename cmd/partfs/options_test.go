package main

import (
	"reflect"
	"testing"
	"time"
)

func TestMountOptions(t *testing.T) {
	runParseCases(t, []parseCase{
		{"flags as options", []string{"-o", "endpoint=http://127.0.0.1:9000,uid=1000,gid=1001,allow_other,part_size=16MiB", "b", "/m"},
			func(c *config) bool {
				return c.Endpoint == "http://127.0.0.1:9000" && c.PathStyle && c.UID == 1000 && c.GID == 1001 &&
					c.AllowOther && c.DefaultPermissions && c.PartSize == 16<<20
			}},
		{"ro", []string{"b", "/m", "-o", "ro"}, func(c *config) bool { return c.ReadOnly }},
		{"rw after ro", []string{"-o", "ro,rw", "b", "/m"}, func(c *config) bool { return !c.ReadOnly }},
		{"generic options ignored", []string{"-o", "rw,defaults,_netdev,nofail,noauto,user,nosuid,nodev,noexec,noatime,x-systemd.automount,x-systemd.requires=network-online.target,comment=x", "b", "/m"},
			func(c *config) bool { return !c.ReadOnly }},
		{"several -o", []string{"-o", "uid=7", "b", "-o", "file_mode=600", "/m"}, func(c *config) bool {
			return c.UID == 7 && c.FileMode == 0o600
		}},
		{"bool with value", []string{"-o", "read_only=true,debug", "b", "/m"}, func(c *config) bool { return c.ReadOnly && c.Debug }},
		{"default_permissions alone", []string{"-o", "default_permissions", "b", "/m"}, func(c *config) bool {
			return c.DefaultPermissions && !c.AllowOther
		}},
		{"sloppy ignores unknown", []string{"--sloppy", "-o", "frobnicate,uid=3", "b", "/m"}, func(c *config) bool { return c.UID == 3 }},
		{"encryption", []string{"-o", "sse=aes256", "b", "/m"}, func(c *config) bool { return c.SSE == "AES256" }},
		{"kms", []string{"--sse", "aws:kms", "--sse-kms-key-id", "k1", "b", "/m"}, func(c *config) bool {
			return c.SSE == "aws:kms" && c.SSEKMSKeyID == "k1"
		}},
		{"abort age", []string{"-o", "abort_uploads_older_than=7d", "b", "/m"}, func(c *config) bool {
			return c.AbortUploadsOlderThan == 7*24*time.Hour
		}},
		{"abort age off", []string{"--abort-uploads-older-than", "off", "b", "/m"}, func(c *config) bool {
			return c.AbortUploadsOlderThan < 0
		}},
		{"abort age default", []string{"b", "/m"}, func(c *config) bool {
			return c.AbortUploadsOlderThan == defaultAbortAge && c.MetricsAddr == ""
		}},
		{"metrics", []string{"-o", "metrics_addr=127.0.0.1:9464", "b", "/m"}, func(c *config) bool {
			return c.MetricsAddr == "127.0.0.1:9464"
		}},
	})
}

func TestMountOptionErrors(t *testing.T) {
	runParseErrors(t, []parseError{
		{[]string{"-o", "frobnicate", "b", "/m"}, `unknown mount option "frobnicate"`},
		{[]string{"-o", "uid", "b", "/m"}, "option uid needs a value"},
		{[]string{"-o", "uid=alice", "b", "/m"}, "numeric ID"},
		{[]string{"-o", "o=x", "b", "/m"}, "unknown mount option"},
		{[]string{"--sse", "des", "b", "/m"}, "want AES256"},
		{[]string{"--sse-kms-key-id", "k", "b", "/m"}, "needs --sse aws:kms"},
		{[]string{"--sse", "AES256", "--sse-c-key-file", "/k", "b", "/m"}, "cannot be combined"},
		{[]string{"--abort-uploads-older-than", "soon", "b", "/m"}, "invalid age"},
		{[]string{"--metrics-addr", "9464", "b", "/m"}, "HOST:PORT"},
	})
}

func TestHelperArgs(t *testing.T) {
	tests := []struct {
		in   []string
		out  []string
		fake bool
	}{
		{[]string{"bucket:data", "/mnt", "-o", "rw,uid=1"}, []string{"bucket:data", "/mnt", "-o", "rw,uid=1"}, false},
		{[]string{"b", "/mnt", "-s", "-n", "-v", "-o", "x", "-t", "fuse.partfs"}, []string{"b", "/mnt", "--sloppy", "-o", "x"}, false},
		{[]string{"b", "/mnt", "-f", "-onodev"}, []string{"b", "/mnt", "-o", "nodev"}, true},
		{[]string{"b", "/mnt", "-sfv"}, []string{"b", "/mnt", "--sloppy"}, true},
		{[]string{"b", "/mnt", "--foreground"}, []string{"b", "/mnt", "--foreground"}, false},
	}
	for _, tt := range tests {
		out, fake, err := helperArgs(tt.in)
		if err != nil || !reflect.DeepEqual(out, tt.out) || fake != tt.fake {
			t.Errorf("helperArgs(%q) = %q, %v, %v; want %q, %v", tt.in, out, fake, err, tt.out, tt.fake)
		}
	}
	if _, _, err := helperArgs([]string{"b", "/m", "-N", "/proc/1/ns/mnt"}); err == nil {
		t.Error("-N was accepted")
	}
	for name, want := range map[string]bool{
		"/sbin/mount.fuse.partfs": true, "mount.partfs": true, "/usr/bin/partfs": false, "partfs-race": false,
	} {
		if isMountHelper(name) != want {
			t.Errorf("isMountHelper(%q) = %v", name, !want)
		}
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0}, {"24h", 24 * time.Hour}, {"90m", 90 * time.Minute}, {"7d", 7 * 24 * time.Hour},
		{"off", -1}, {"never", -1}, {"-1", -1}, {"-5m", -1},
	}
	for _, tt := range tests {
		got, err := parseAge(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := parseAge(formatAge(got)); err != nil || back != got {
			t.Errorf("parseAge(formatAge(%v)) = %v, %v", got, back, err)
		}
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", time.Hour: "1h", 90 * time.Minute: "1h30m",
		7 * 24 * time.Hour: "7d", 90 * time.Second: "1m30s", -1: "off", 0: "0"} {
		if got := formatAge(d); got != want {
			t.Errorf("formatAge(%v) = %q, want %q", d, got, want)
		}
	}
	for _, bad := range []string{"", "soon", "1.5d", "d"} {
		if _, err := parseAge(bad); err == nil {
			t.Errorf("parseAge(%q) succeeded", bad)
		}
	}
}
