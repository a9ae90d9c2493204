package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/partfs/partfs/internal/miniotest"
)

// builds holds the partfs executables, each built once on first use into a
// directory that TestMain removes.
var builds struct {
	dir string

	mu     sync.Mutex
	paths  map[bool]string // guarded by mu; keyed by race
	errors map[bool]error  // guarded by mu; a failed build is not retried
}

func TestMain(m *testing.M) {
	if os.Getenv(writeHelperEnv) != "" {
		os.Exit(writeHelper())
	}
	if os.Getenv(readHelperEnv) != "" {
		os.Exit(readHelper())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "partfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	builds.dir = dir
	return miniotest.Main(m)
}

// partfsBinary returns the path of partfs built from ./cmd/partfs, with the
// race detector or without. Functional tests use the race build so that a
// race in partfs fails them; the memory test and the benchmark use the
// plain build, because the race detector's shadow memory and slowdown would
// swamp what they measure.
func partfsBinary(tb testing.TB, race bool) string {
	tb.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.paths[race]; ok {
		return p
	}
	if err := builds.errors[race]; err != nil {
		tb.Fatal(err)
	}
	name, flags := "partfs", []string(nil)
	if race {
		name, flags = "partfs-race", []string{"-race"}
	}
	out := filepath.Join(builds.dir, name)
	if err := build(out, flags...); err != nil {
		if builds.errors == nil {
			builds.errors = map[bool]error{}
		}
		builds.errors[race] = err
		tb.Fatal(err)
	}
	if builds.paths == nil {
		builds.paths = map[bool]string{}
	}
	builds.paths[race] = out
	return out
}

// build compiles ./cmd/partfs into out.
func build(out string, flags ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", out, "./cmd/partfs")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, b)
	}
	return nil
}

// goTool is the go command that is running these tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleRoot is the directory holding go.mod above the working directory.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}
