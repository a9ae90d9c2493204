package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	runParseCases(t, []parseCase{
		{"defaults", []string{"bucket", "/mnt"}, func(c *config) bool {
			return c.Bucket == "bucket" && c.Prefix == "" && c.Mountpoint == "/mnt" &&
				c.PartSize == 8<<20 && c.WriteBuffer == 512<<20 && c.CacheSize == 256<<20 &&
				c.UploadConcurrency == 4 && c.FileMode == 0o644 && c.DirMode == 0o755 &&
				!c.PathStyle && !c.Foreground && !c.ReadOnly
		}},
		{"prefix", []string{"bucket:/a/b", "/mnt"}, func(c *config) bool { return c.Prefix == "a/b/" }},
		{"double dash", []string{"--foreground", "--part-size=16MiB", "b", "/m"}, func(c *config) bool {
			return c.Foreground && c.PartSize == 16<<20
		}},
		{"single dash", []string{"-f", "-read-only", "-uid", "1000", "b", "/m"}, func(c *config) bool {
			return c.Foreground && c.ReadOnly && c.UID == 1000
		}},
		{"flags after operands", []string{"b", "/m", "-f", "--file-mode", "600"}, func(c *config) bool {
			return c.Foreground && c.FileMode == 0o600
		}},
		{"endpoint implies path style", []string{"--endpoint", "http://127.0.0.1:9000", "b", "/m"}, func(c *config) bool {
			return c.PathStyle
		}},
		{"explicit path style wins", []string{"--endpoint", "http://x", "--path-style=false", "b", "/m"}, func(c *config) bool {
			return !c.PathStyle
		}},
		{"path style without endpoint", []string{"--path-style", "b", "/m"}, func(c *config) bool { return c.PathStyle }},
		{"after --", []string{"-f", "--", "b", "/m"}, func(c *config) bool { return c.Bucket == "b" && c.Foreground }},
	})
}

// parseCase is arguments that parse, and a check of the config they give.
type parseCase struct {
	name  string
	args  []string
	check func(*config) bool
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseArgs(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("parseArgs(%q) = %+v", tt.args, *cfg)
			}
		})
	}
}

// parseError is arguments refused with a one-line usage error containing want.
type parseError struct {
	args []string
	want string
}

func runParseErrors(t *testing.T, cases []parseError) {
	t.Helper()
	for _, tt := range cases {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseArgs(tt.args)
			var usage usageError
			if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseArgs(%q) = %v, want a usage error mentioning %q", tt.args, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("message spans lines: %q", err)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	runParseErrors(t, []parseError{
		{nil, "got 0 operand"},
		{[]string{"b"}, "got 1 operand"},
		{[]string{"b", "/m", "extra"}, "got 3 operand"},
		{[]string{"--part-size", "4MiB", "b", "/m"}, "5MiB"},
		{[]string{"--part-size", "6GiB", "b", "/m"}, "5GiB"},
		{[]string{"--part-size", "16MiB", "--write-buffer", "16MiB", "b", "/m"}, "at least two parts (32MiB"},
		{[]string{"--part-size", "lots", "b", "/m"}, "part-size"},
		{[]string{"--upload-concurrency", "0", "b", "/m"}, "upload-concurrency"},
		{[]string{"--file-mode", "rw", "b", "/m"}, "octal"},
		{[]string{"--nope", "b", "/m"}, "not defined"},
		{[]string{":prefix", "/m"}, "invalid bucket"},
		{[]string{"b:x/../y", "/m"}, "invalid prefix"},
	})
	if _, err := parseArgs([]string{"--help"}); !errors.Is(err, errHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestCheckMountpoint(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	file := filepath.Join(dir, "file")
	for _, d := range []string{empty, full} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{file, filepath.Join(full, "x")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir  string
		want string // "" for success
	}{
		{empty, ""},
		{full, "not empty"},
		{file, "not a directory"},
		{filepath.Join(dir, "missing"), "does not exist"},
	}
	for _, tt := range tests {
		err := checkMountpoint(tt.dir)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkMountpoint(%s) = %v, want %q", tt.dir, err, tt.want)
		}
	}
}
