package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/partfs/partfs/metrics"
)

func TestStatusSocket(t *testing.T) {
	runtime := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	dir := filepath.Join(runtime, "partfs")
	mnt := canonicalMountpoint(t.TempDir())
	reply := statusReply{
		PID: 42, Mountpoint: mnt, Bucket: "b", Prefix: "p/", Started: time.Now().Add(-time.Minute),
		Figures: metrics.Snapshot{BytesUploaded: 3 << 20, PartsInFlight: 2, DirtyFiles: 1,
			WriteBuffer: &metrics.WriteBuffer{Total: 512 << 20, Used: 16 << 20}},
		LiveUploads: []liveUpload{{Key: "p/big.bin", UploadID: "upload-1"}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, reply) })
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := startStatusServer(dir, mnt, mux)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	if fi, err := os.Stat(srv.path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, mode %v", srv.path, err, fi.Mode())
	}

	// A second server for the same mountpoint is refused.
	var busy alreadyServedError
	if _, err := startStatusServer(dir, mnt, mux); !errors.As(err, &busy) || busy.pid != 42 {
		t.Errorf("second server: %v", err)
	}

	got, err := findStatus(context.Background(), mnt)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 42 || got.Figures.BytesUploaded != 3<<20 || len(got.LiveUploads) != 1 {
		t.Errorf("findStatus = %+v", got)
	}
	live, _ := localLiveUploads(context.Background())
	if !live["upload-1"] {
		t.Errorf("localLiveUploads = %v, want upload-1", live)
	}

	var out, errOut bytes.Buffer
	if code := runStatus([]string{mnt}, &out, &errOut); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"dirty files", "3.0 MiB", "parts in flight", "16.0 MiB of 512.0 MiB", "p/big.bin"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := runStatus([]string{"--json", mnt}, &out, &errOut); code != 0 {
		t.Fatalf("status --json: exit %d", code)
	}
	var decoded statusReply
	if err := json.Unmarshal(out.Bytes(), &decoded); err != nil || decoded.Bucket != "b" {
		t.Errorf("--json output %q: %v", out.String(), err)
	}

	// Once the server is gone its socket is stale.
	srv.close()
	if code := runStatus([]string{t.TempDir()}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no partfs mount") {
		t.Errorf("unknown mountpoint: exit %d, %q", code, errOut.String())
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPruneStaleSockets(t *testing.T) {
	dir := t.TempDir()
	live, err := net.Listen("unix", filepath.Join(dir, "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for _, name := range []string{"dead.sock", "young-dead.sock"} {
		l, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		// Closing a unix listener removes its file; keep the file, as a
		// killed process does.
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	old := time.Now().Add(-2 * staleAge)
	for _, name := range []string{"live.sock", "dead.sock"} {
		if err := os.Chtimes(filepath.Join(dir, name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	pruneStaleSockets(dir)
	for name, want := range map[string]bool{"live.sock": true, "dead.sock": false, "young-dead.sock": true} {
		if _, err := os.Lstat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", name, err == nil, want)
		}
	}
}
