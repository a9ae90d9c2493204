package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.0", "5f3c9e1"
	var out, errOut bytes.Buffer
	if code := runVersion(nil, &out, &errOut); code != 0 {
		t.Fatalf("exit status %d: %s", code, errOut.String())
	}
	want := "partfs v1.2.0 (commit 5f3c9e1, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if out.String() != want {
		t.Errorf("version printed %q, want %q", out.String(), want)
	}

	// Unstamped, as go test and go install build it.
	version, commit = "", ""
	if line := versionLine(); !strings.HasPrefix(line, "partfs ") || !strings.Contains(line, runtime.Version()) {
		t.Errorf("unstamped version line %q", line)
	}
	if code := runVersion([]string{"extra"}, &out, &errOut); code != 2 {
		t.Errorf("version with an argument: exit status %d, want 2", code)
	}
}
