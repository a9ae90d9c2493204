package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/internal/miniotest"
	"github.com/partfs/partfs/internal/s3proxy"
)

// Helpers of the tests of encryption, fstab, upload cleanup, metrics,
// shutdown and permissions.

// log returns everything partfs has logged so far.
func (m *mount) log() string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		m.t.Fatal(err)
	}
	return string(b)
}

// waitExit waits for partfs to exit on its own and returns its error.
func (m *mount) waitExit(timeout time.Duration) error {
	m.t.Helper()
	select {
	case <-m.exited:
		return m.waitErr
	case <-time.After(timeout):
		m.t.Fatalf("partfs still running after %v\n%s", timeout, m.logTail())
		return nil
	}
}

// runPartfs runs a partfs command (cleanup, status) against the env's
// server, through the proxy, and returns its combined output.
func (e *env) runPartfs(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, partfsBinary(e.t, true), args...)
	cmd.Env = partfsEnv(e.srv.AccessKey, e.srv.SecretKey)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// connArgs are the flags that point a partfs command at the env's proxy.
func (e *env) connArgs() []string {
	return []string{"--endpoint", e.proxy.URL(), "--region", miniotest.Region}
}

// tlsEnv is an env on a MinIO that serves TLS and has a KMS key, behind a
// proxy that speaks TLS on both sides; tlsArgs point partfs at the proxy
// and make it trust the proxy's certificate.
func tlsEnv(t *testing.T) (*env, []string) {
	t.Helper()
	requireFUSE(t)
	srv := miniotest.SharedWith(t, miniotest.Options{TLS: true, KMS: true})
	p := s3proxy.StartTLS(t, srv.Endpoint, srv.CAFile)
	e := &env{t: t, srv: srv, s3: srv.Client(t), bucket: srv.NewBucket(t), proxy: p.Proxy}
	// The later --endpoint wins over the one mountConfig.args gives.
	return e, []string{"--endpoint", p.URL(), "--ca-bundle", p.CAFile}
}

// scrape fetches a metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// metricValue returns the value of the sample whose name and labels are
// exactly series, or -1 when there is none.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// mountinfoOptions returns the mount options and the super-block options
// of the mount at dir, and its file system type, from /proc/self/mountinfo.
func mountinfoOptions(t *testing.T, dir string) (opts, superOpts, fstype string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID parent major:minor root mountpoint options [optional...] - type source superoptions
		fields := strings.Fields(line)
		if len(fields) < 10 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		for i := 6; i < len(fields)-3; i++ {
			if fields[i] == "-" {
				return fields[5], fields[i+3], fields[i+1]
			}
		}
	}
	t.Fatalf("%s not in /proc/self/mountinfo", dir)
	return "", "", ""
}

// hasOption reports whether the comma-separated list holds opt.
func hasOption(list, opt string) bool {
	for _, o := range strings.Split(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// writeFile0600 writes a file only its owner may read.
func writeFile0600(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// describeAll lists the proxy's requests of the given ops, one a line.
func describeAll(p *s3proxy.Proxy, ops ...string) string {
	var b strings.Builder
	for _, r := range p.Ops(ops...) {
		fmt.Fprintf(&b, "  #%d %s %s part=%d status=%d\n", r.Seq, r.Op, r.Key, r.PartNumber, r.Status)
	}
	return b.String()
}

// removeStatusSocket removes the status socket a partfs process killed
// with SIGKILL leaves behind: /run/partfs (root's directory) holds one per
// mountpoint, named after the first 8 bytes of the SHA-256 of its path.
func removeStatusSocket(dir string) {
	if os.Geteuid() != 0 {
		return
	}
	sum := sha256.Sum256([]byte(dir))
	os.Remove(filepath.Join("/run/partfs", hex.EncodeToString(sum[:8])+".sock"))
}
