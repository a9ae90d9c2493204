package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/partfs/partfs/metrics"
	"github.com/partfs/partfs/writeback"
)

// Status sockets
//
// Every mount serves a small HTTP API on a unix socket: GET /status answers
// the mount's figures as JSON (statusReply) and GET /metrics the Prometheus
// text, whether or not --metrics-addr is given. The socket is private to the
// user who mounted: it lives in a directory of mode 0700,
//
//	/run/partfs                   for root,
//	$XDG_RUNTIME_DIR/partfs       for other users when that is set,
//	$TMPDIR/partfs-UID            otherwise,
//
// named after a hash of the mountpoint's path, so that `partfs status
// MOUNTPOINT` finds it without any registry. A socket needs no cleanup after
// a crash: the next mount on the same path replaces it, and a stale socket
// refuses connections, which status reports.

// statusDirs returns the directories where this user's mounts keep their
// sockets; the first is where a mount started now puts its own.
func statusDirs() []string {
	var dirs []string
	if os.Geteuid() == 0 {
		dirs = append(dirs, "/run/partfs")
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		dirs = append(dirs, filepath.Join(x, "partfs"))
	}
	return append(dirs, filepath.Join(os.TempDir(), "partfs-"+strconv.Itoa(os.Geteuid())))
}

// canonicalMountpoint is the path that names a mount's socket: absolute,
// with symbolic links resolved when that is possible.
func canonicalMountpoint(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return filepath.Clean(dir)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// socketName is the socket's file name for a canonical mountpoint.
func socketName(mountpoint string) string {
	sum := sha256.Sum256([]byte(mountpoint))
	return hex.EncodeToString(sum[:8]) + ".sock"
}

// statusReply is what GET /status answers. It holds no credentials and no
// key material: only what was mounted, how, and the figures.
type statusReply struct {
	PID         int              `json:"pid"`
	Mountpoint  string           `json:"mountpoint"`
	Bucket      string           `json:"bucket"`
	Prefix      string           `json:"prefix"`
	Endpoint    string           `json:"endpoint,omitempty"`
	ReadOnly    bool             `json:"read_only"`
	FastClose   bool             `json:"fast_close,omitempty"`
	Encryption  string           `json:"encryption,omitempty"` // AES256, aws:kms or SSE-C
	Started     time.Time        `json:"started"`
	MetricsURL  string           `json:"metrics_url,omitempty"`
	Figures     metrics.Snapshot `json:"figures"`
	LiveUploads []liveUpload     `json:"live_uploads"`
	// Unsaved are the files whose changes could not be stored.
	Unsaved []writeback.Unsaved `json:"unsaved,omitempty"`
	// Conflicts are the recent writes that lost a race with another
	// client, and ConflictCount all of them since the mount.
	Conflicts     []writeback.Conflict `json:"conflicts,omitempty"`
	ConflictCount int64                `json:"conflict_count,omitempty"`
}

// statusServer serves a mount's socket.
type statusServer struct {
	path string
	srv  *http.Server
}

// startStatusServer listens on the socket for mountpoint in dir and serves
// h. It refuses to take over the socket of a mount that still answers.
func startStatusServer(dir, mountpoint string, h http.Handler) (*statusServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	path := filepath.Join(dir, socketName(mountpoint))
	if reply, err := fetchStatus(context.Background(), path); err == nil {
		return nil, alreadyServedError{pid: reply.PID, mountpoint: mountpoint}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	pruneStaleSockets(dir)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	s := &statusServer{path: path, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	go s.srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed
	return s, nil
}

// staleAge is how old a socket that refuses connections must be before it
// is taken for a dead mount's: a socket is bound a moment before it listens.
const staleAge = time.Minute

// pruneStaleSockets removes the sockets in dir that mounts killed without a
// chance to clean up (kill -9, a crash) left behind.
func pruneStaleSockets(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, sock := range socks {
		fi, err := os.Lstat(sock)
		if err != nil || fi.Mode().Type() != os.ModeSocket || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		conn, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			conn.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(sock)
		}
	}
}

// alreadyServedError: another partfs process answers on the socket of the
// same mountpoint.
type alreadyServedError struct {
	pid        int
	mountpoint string
}

func (e alreadyServedError) Error() string {
	return fmt.Sprintf("partfs (pid %d) already serves %s", e.pid, e.mountpoint)
}

// writeJSON writes v as the answer.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// close stops serving and removes the socket.
func (s *statusServer) close() {
	s.srv.Close()
	os.Remove(s.path)
}

// fetchStatus asks the mount behind the socket at path for its status.
func fetchStatus(ctx context.Context, path string) (*statusReply, error) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://partfs/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status socket %s answered %s", path, resp.Status)
	}
	var reply statusReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&reply); err != nil {
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	return &reply, nil
}

// localLiveUploads asks every partfs mount of this user on this machine for
// the uploads it is writing, and returns their IDs. Mounts that do not
// answer are skipped.
func localLiveUploads(ctx context.Context) (map[string]bool, error) {
	live := map[string]bool{}
	var errs []error
	for _, dir := range statusDirs() {
		socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
		for _, sock := range socks {
			reply, err := fetchStatus(ctx, sock)
			if err != nil {
				if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			for _, u := range reply.LiveUploads {
				live[u.UploadID] = true
			}
		}
	}
	return live, errors.Join(errs...)
}

const statusUsage = `Usage: partfs status [--json] MOUNTPOINT

Prints the figures of the partfs process serving MOUNTPOINT: files with
unsaved changes, bytes uploaded, parts in flight, write-buffer use, S3
requests and the uploads in progress. It asks the mount through its status
socket, which only the user who mounted can reach.

Flags:
`

// runStatus is the status command; it returns the exit status.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("partfs status", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	asJSON := fl.Bool("json", false, "print the status as JSON")
	operands, err := parseOperands(fl, args)
	switch {
	case errors.Is(err, errHelp):
		fl.SetOutput(stdout)
		fmt.Fprint(stdout, statusUsage)
		fl.PrintDefaults()
		return 0
	case err == nil && len(operands) != 1:
		err = usageError{fmt.Sprintf("want MOUNTPOINT, got %d operand(s); see partfs status --help", len(operands))}
	}
	if err != nil {
		fmt.Fprintln(stderr, "partfs status:", oneLine(err))
		return 2
	}
	mountpoint := canonicalMountpoint(operands[0])
	reply, err := findStatus(context.Background(), mountpoint)
	if err != nil {
		fmt.Fprintln(stderr, "partfs status:", oneLine(err))
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reply); err != nil {
			return 1
		}
		return 0
	}
	printStatus(stdout, reply)
	return 0
}

// findStatus looks for the socket of mountpoint in this user's directories.
func findStatus(ctx context.Context, mountpoint string) (*statusReply, error) {
	name := socketName(mountpoint)
	var stale error
	for _, dir := range statusDirs() {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		reply, err := fetchStatus(ctx, path)
		if err == nil {
			return reply, nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			stale = fmt.Errorf("the partfs process that mounted %s is gone (its status socket %s refuses connections)", mountpoint, path)
			continue
		}
		return nil, fmt.Errorf("%s: %w", mountpoint, err)
	}
	if stale != nil {
		return nil, stale
	}
	return nil, fmt.Errorf("no partfs mount of this user at %s (looked in %s)", mountpoint, strings.Join(statusDirs(), ", "))
}

// printStatus writes the human-readable status.
func printStatus(w io.Writer, r *statusReply) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(name, format string, args ...any) { fmt.Fprintf(tw, name+"\t"+format+"\n", args...) }
	f := r.Figures
	source := "s3://" + r.Bucket + "/" + r.Prefix
	if r.Endpoint != "" {
		source += " at " + r.Endpoint
	}
	line("mountpoint", "%s", r.Mountpoint)
	line("source", "%s", source)
	line("pid", "%d, up %s", r.PID, time.Since(r.Started).Truncate(time.Second))
	if r.ReadOnly {
		line("mode", "read-only")
	}
	if r.FastClose {
		line("close", "fast: files are uploaded after close; fsync waits")
	}
	if r.Encryption != "" {
		line("encryption", "%s", r.Encryption)
	}
	line("dirty files", "%d", f.DirtyFiles)
	if len(r.Unsaved) > 0 {
		line("NOT stored", "%d file(s), listed below", len(r.Unsaved))
	}
	if r.ConflictCount > 0 {
		line("conflicts", "%d (another host stored the file first; the recent ones are listed below)", r.ConflictCount)
	}
	line("uploads", "%d in progress", len(r.LiveUploads))
	line("uploaded", "%s", humanBytes(f.BytesUploaded))
	line("downloaded", "%s", humanBytes(f.BytesDownloaded))
	if f.BytesCopied > 0 {
		line("copied in S3", "%s", humanBytes(f.BytesCopied))
	}
	line("parts in flight", "%d", f.PartsInFlight)
	if wb := f.WriteBuffer; wb != nil {
		line("write buffer", "%s of %s in use (peak %s), %d writer(s) waiting",
			humanBytes(wb.Used), humanBytes(wb.Total), humanBytes(wb.Peak), wb.Waiting)
	}
	if c := f.Cache; c != nil {
		line("read cache", "%d hits, %d misses, %s fetched", c.Hits, c.Misses, humanBytes(c.GetBytes))
	}
	line("S3 requests", "%d, %d failed, %d retried", f.Requests, f.Errors, f.Retries)
	if r.MetricsURL != "" {
		line("metrics", "%s", r.MetricsURL)
	}
	tw.Flush()
	for _, u := range r.LiveUploads {
		fmt.Fprintf(w, "  writing %s (upload %s)\n", u.Key, u.UploadID)
	}
	for _, u := range r.Unsaved {
		fmt.Fprintf(w, "  not stored: %s at %s: %s\n", u.Key, u.At.Format(time.RFC3339), u.Err)
	}
	for _, c := range r.Conflicts {
		if c.CopyKey != "" {
			fmt.Fprintf(w, "  conflict: %s at %s: this mount's bytes are in %s\n", c.Key, c.At.Format(time.RFC3339), c.CopyKey)
		} else {
			fmt.Fprintf(w, "  conflict: %s at %s: this mount's bytes were not kept\n", c.Key, c.At.Format(time.RFC3339))
		}
	}
}

// humanBytes writes n in binary units with one decimal.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
