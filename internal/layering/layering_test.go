package layering

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/partfs/partfs"

// layer places each package of partfs. A package may import packages of
// lower layers only; its tests may also import the test fakes and the
// packages under internal/. Packages of one layer know nothing of each
// other.
var layer = map[string]int{
	"store": 0,

	"store/memstore":  1,
	"store/s3":        1,
	"store/storetest": 1,

	// metrics wraps the store for cmd, beside the consumers of the store.
	"cache":     2,
	"meta":      2,
	"metrics":   2,
	"writeback": 2,

	"fs": 3,

	"cmd/partfs": 4,
}

// testFakes may be imported by the tests of any package.
var testFakes = []string{"store/memstore", "store/storetest"}

// Test support and tools: packages under internal/ and the end-to-end
// tests. No package of the layers above imports them outside its tests;
// they import what they need.
func support(pkg string) bool {
	return pkg == "integration" || strings.HasPrefix(pkg, "internal/")
}

// outside lists the libraries that only some packages of partfs may import
// directly, by import path (and the paths below it), and which packages
// those are.
var outside = []struct {
	prefix  string
	allowed []string
	why     string
}{
	{"github.com/hanwen/go-fuse", []string{"fs"}, "the FUSE library belongs to fs"},
	{"github.com/aws/aws-sdk-go-v2", []string{"store/s3", "internal/miniotest", "internal/cmd/s3util", "integration"},
		"the AWS SDK belongs to store/s3 (and to the tools and tests that check S3 without partfs)"},
	{"github.com/aws/smithy-go", []string{"store/s3", "internal/miniotest", "internal/cmd/s3util", "integration"},
		"the AWS SDK belongs to store/s3 (and to the tools and tests that check S3 without partfs)"},
	{"github.com/prometheus", []string{"metrics"}, "the Prometheus client belongs to metrics"},
	{"flag", []string{"cmd/partfs", "internal/cmd/s3util"}, "only commands read flags"},
}

// noSyscall are the packages below fs, which return wrapped errors and
// leave errno to fs (tests may use syscall).
var noSyscall = []string{"store", "store/memstore", "store/s3", "store/storetest", "cache", "meta", "metrics", "writeback"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < len(layer) {
		t.Fatalf("go list found %d packages, fewer than the %d placed in layers", len(pkgs), len(layer))
	}
	return pkgs
}

// local returns the path of an import inside the module ("fs", "store/s3"),
// or "" for an outside one.
func local(path string) string {
	if path == module {
		return "."
	}
	if rest, ok := strings.CutPrefix(path, module+"/"); ok {
		return rest
	}
	return ""
}

func TestLayers(t *testing.T) {
	for _, p := range listPackages(t) {
		name := local(p.ImportPath)
		if name == "" {
			t.Fatalf("go list returned %s, outside %s", p.ImportPath, module)
		}
		if p.Error != nil {
			t.Errorf("%s: %s", name, p.Error.Err)
		}
		for _, v := range check(name, p) {
			t.Error(v)
		}
	}
}

// check returns the rules that the imports of the package name break.
func check(name string, p pkg) []string {
	var bad []string
	rank, placed := layer[name]
	if !placed && !support(name) {
		return []string{fmt.Sprintf("%s is in no layer: place it in the table of layering_test.go", name)}
	}
	visit := func(imports []string, test bool) {
		for _, imp := range imports {
			for _, o := range outside {
				if (imp == o.prefix || strings.HasPrefix(imp, o.prefix+"/")) && !slices.Contains(o.allowed, name) {
					bad = append(bad, fmt.Sprintf("%s imports %s: %s", name, imp, o.why))
				}
			}
			if !test && (imp == "syscall" || imp == "golang.org/x/sys/unix") && slices.Contains(noSyscall, name) {
				bad = append(bad, fmt.Sprintf("%s imports %s: errno belongs to fs", name, imp))
			}
			dep := local(imp)
			if dep == "" || dep == name || support(name) {
				continue
			}
			if support(dep) {
				if !test {
					bad = append(bad, fmt.Sprintf("%s imports %s, which is for tests and tools", name, dep))
				}
				continue
			}
			if test && slices.Contains(testFakes, dep) {
				continue
			}
			depRank, ok := layer[dep]
			if !ok {
				continue // reported for dep itself
			}
			if depRank >= rank {
				bad = append(bad, fmt.Sprintf("%s imports %s: imports point down only (cmd → fs → writeback, cache, meta → store)", name, dep))
			}
		}
	}
	visit(p.Imports, false)
	visit(p.TestImports, true)
	visit(p.XTestImports, true)
	return bad
}

// TestCheckCatches makes sure that check finds each kind of violation,
// so that TestLayers passing means something.
func TestCheckCatches(t *testing.T) {
	tests := []struct {
		name string
		pkg  pkg
	}{
		{"cmd/partfs", pkg{Imports: []string{"github.com/hanwen/go-fuse/v2/fuse"}}},
		{"cache", pkg{Imports: []string{"github.com/aws/aws-sdk-go-v2/service/s3"}}},
		{"store", pkg{TestImports: []string{"github.com/aws/smithy-go"}}},
		{"writeback", pkg{Imports: []string{"flag"}}},
		{"store", pkg{Imports: []string{module + "/cache"}}},
		{"cache", pkg{Imports: []string{module + "/writeback"}}},
		{"fs", pkg{XTestImports: []string{module + "/cmd/partfs"}}},
		{"writeback", pkg{Imports: []string{module + "/internal/testcert"}}},
		{"cache", pkg{Imports: []string{"syscall"}}},
		{"newpkg", pkg{}},
	}
	for _, tt := range tests {
		if len(check(tt.name, tt.pkg)) == 0 {
			t.Errorf("check(%s, %+v) found nothing wrong", tt.name, tt.pkg)
		}
	}
	ok := pkg{
		Imports:     []string{module + "/store", "github.com/dgraph-io/ristretto/v2", "flagged/not-flag"},
		TestImports: []string{module + "/store/memstore", module + "/internal/testcert"},
	}
	if bad := check("cache", ok); len(bad) != 0 {
		t.Errorf("check(cache) of allowed imports: %v", bad)
	}
}
