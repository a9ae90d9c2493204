package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and commit are stamped by make build:
//
//	go build -ldflags "-X main.version=v1.2.0 -X main.commit=$(git rev-parse HEAD)"
//
// Left empty, versionLine takes what the Go toolchain recorded in the
// binary: the module version of `go install …@v1.2.0`, and the revision of
// a build in a clone.
var (
	version string
	commit  string
)

// versionLine says which partfs this is, in one line for scripts and bug
// reports: "partfs v1.2.0 (commit 5f3c…, go1.26.8 linux/amd64)".
func versionLine() string {
	v, c, modified := version, commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.modified" && commit == "":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	if c == "" {
		c = "unknown"
	} else if modified {
		c += "-modified"
	}
	return fmt.Sprintf("partfs %s (commit %s, %s %s/%s)", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// runVersion is `partfs version` and `partfs --version`.
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "partfs: version takes no arguments")
		return 2
	}
	fmt.Fprintln(stdout, versionLine())
	return 0
}
