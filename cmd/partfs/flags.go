package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/partfs/partfs/store"
)

// config is everything the command line of a mount says.
type config struct {
	Bucket     string
	Prefix     string // "" or ending in "/"
	Mountpoint string // absolute

	connConfig

	// SSE is "", "AES256" or "aws:kms"; SSECKeyFile names a customer key
	// (SSE-C). The key itself is read only when needed and never kept here,
	// so that no printing of the config can show it.
	SSE         string
	SSEKMSKeyID string
	SSECKeyFile string // absolute when set

	PartSize          int64
	UploadConcurrency int
	WriteBuffer       int64
	CacheSize         int64
	ReadAhead         int64
	// MaxRequest is the largest FUSE request asked of the kernel.
	MaxRequest int64

	// StatTTL and NegativeTTL are how long stat results and missing names
	// are believed, by partfs and by the kernel; 0 turns caching off.
	StatTTL, NegativeTTL time.Duration

	UID, GID           uint32
	FileMode, DirMode  uint32
	ReadOnly           bool
	FastClose          bool
	PutConcurrency     int
	UploadDelay        time.Duration
	OnConflict         string // conflictCopy, conflictError or conflictOverwrite
	AllowOther         bool
	DefaultPermissions bool

	// AbortUploadsOlderThan is the age beyond which multipart uploads under
	// the mount's prefix are aborted at mount; negative turns that off.
	AbortUploadsOlderThan time.Duration
	MetricsAddr           string

	Foreground bool
	Debug      bool
	// Sloppy ignores -o options that name no flag (mount -s).
	Sloppy bool
	// unknownOptions are -o options that name no flag.
	unknownOptions []string
}

// errHelp asks for the usage text and a successful exit.
var errHelp = flag.ErrHelp

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageHead = `Usage: partfs [flags] BUCKET[:PREFIX] MOUNTPOINT
       partfs cleanup [--yes] [--older-than AGE] [flags] BUCKET[:PREFIX]
       partfs status [--json] MOUNTPOINT
       partfs version (or --version)

Mounts an S3 bucket, or the keys under PREFIX in it, on MOUNTPOINT.
Credentials come from the usual AWS sources: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared config and credentials files (--profile),
or the instance's role. Sizes take K, M, G or T (powers of 1024), e.g. 8MiB.
Flags may be written with one dash or two, and every flag is also a mount
option: -o allow_other,uid=1000,endpoint=https://s3.example.com works, as
in /etc/fstab (type fuse.partfs). Run partfs cleanup --help and
partfs status --help for the other commands.

Flags:
`

// connConfig says how to reach S3; mounts and `partfs cleanup` share it.
type connConfig struct {
	Endpoint  string
	Region    string
	Profile   string
	PathStyle bool
	CABundle  string // absolute when set

	// IOTimeout is how long a request may go without a byte moving before
	// its connection is dropped and the request retried; RetryBudget is
	// how long one operation keeps retrying before it fails.
	IOTimeout   time.Duration
	RetryBudget time.Duration
}

// define adds the connection flags to fl.
func (c *connConfig) define(fl *flag.FlagSet) {
	fl.StringVar(&c.Endpoint, "endpoint", "", "S3 endpoint `URL`, e.g. http://127.0.0.1:9000 (default: AWS)")
	fl.StringVar(&c.Region, "region", "", "signing `REGION` (default: from the AWS configuration, else us-east-1)")
	fl.StringVar(&c.Profile, "profile", "", "`NAME` of a profile in the shared AWS configuration files")
	fl.BoolVar(&c.PathStyle, "path-style", false, "path-style bucket addressing (default: on when --endpoint is given)")
	fl.StringVar(&c.CABundle, "ca-bundle", "", "PEM `FILE` of extra certificate authorities to trust")
	fl.DurationVar(&c.IOTimeout, "io-timeout", 30*time.Second, "a request on which no byte moves for this `DURATION` is abandoned and retried")
	fl.DurationVar(&c.RetryBudget, "retry-budget", 2*time.Minute, "an operation that keeps failing is retried for this `DURATION`, then fails (EIO)")
}

// finish applies the defaults that depend on other flags, once fl is parsed.
func (c *connConfig) finish(fl *flag.FlagSet) error {
	pathStyleSet := false
	fl.Visit(func(f *flag.Flag) { pathStyleSet = pathStyleSet || f.Name == "path-style" })
	if !pathStyleSet && c.Endpoint != "" {
		c.PathStyle = true
	}
	if c.IOTimeout < time.Second {
		return usageError{fmt.Sprintf("--io-timeout %v is too short: at least 1s", c.IOTimeout)}
	}
	if c.RetryBudget < c.IOTimeout {
		return usageError{fmt.Sprintf("--retry-budget %v must be at least --io-timeout (%v)", c.RetryBudget, c.IOTimeout)}
	}
	if c.CABundle != "" {
		abs, err := filepath.Abs(c.CABundle)
		if err != nil {
			return err
		}
		c.CABundle = abs
	}
	return nil
}

// checkFiles checks that the CA bundle can be read.
func (c *connConfig) checkFiles() error {
	if c.CABundle == "" {
		return nil
	}
	f, err := os.Open(c.CABundle)
	if err != nil {
		return fmt.Errorf("--ca-bundle: %w", err)
	}
	return f.Close()
}

// newFlagSet defines the flags on cfg, with their defaults.
func newFlagSet(cfg *config) *flag.FlagSet {
	fl := flag.NewFlagSet("partfs", flag.ContinueOnError)
	cfg.connConfig.define(fl)
	fl.StringVar(&cfg.SSE, "sse", "", "server-side encryption of new objects: `MODE` AES256 (S3-managed keys) or aws:kms (default: the bucket's)")
	fl.StringVar(&cfg.SSEKMSKeyID, "sse-kms-key-id", "", "KMS key `ID` for --sse aws:kms (default: the account's S3 key)")
	fl.StringVar(&cfg.SSECKeyFile, "sse-c-key-file", "", "`FILE` holding a customer key for SSE-C: 32 bytes, or their base64; every object is written and read with it")

	cfg.PartSize, cfg.WriteBuffer, cfg.CacheSize = 8<<20, 512<<20, 256<<20
	fl.Var(sizeFlag{&cfg.PartSize}, "part-size", "`SIZE` of the parts uploaded while a file is written; at least 5MiB")
	fl.IntVar(&cfg.UploadConcurrency, "upload-concurrency", 4, "`N` parts uploaded at once, across all files")
	fl.Var(sizeFlag{&cfg.WriteBuffer}, "write-buffer", "`SIZE` of memory for data written but not yet uploaded; at least twice --part-size")
	fl.Var(sizeFlag{&cfg.CacheSize}, "cache-size", "`SIZE` of memory for the read cache; 0 turns it off")
	cfg.ReadAhead = 64 << 20
	fl.Var(sizeFlag{&cfg.ReadAhead}, "read-ahead", "`SIZE` of memory for reading ahead of sequential readers, shared by all of them")
	cfg.MaxRequest = 1 << 20
	fl.Var(sizeFlag{&cfg.MaxRequest}, "max-request", "`SIZE` of the largest FUSE read and write request; beyond 1MiB the kernel's fs.fuse.max_pages_limit must allow it")
	fl.DurationVar(&cfg.StatTTL, "stat-ttl", time.Second, "how long a file's size, time and mode are believed before S3 is asked again (`DURATION`; 0: always ask)")
	fl.DurationVar(&cfg.NegativeTTL, "negative-ttl", time.Second, "how long a missing name is believed missing (`DURATION`; 0: always ask)")

	cfg.UID, cfg.GID = uint32(os.Getuid()), uint32(os.Getgid())
	cfg.FileMode, cfg.DirMode = 0o644, 0o755
	fl.Var(idFlag{&cfg.UID}, "uid", "user `ID` owning objects that carry no owner (your own by default)")
	fl.Var(idFlag{&cfg.GID}, "gid", "group `ID` of objects that carry no group (your own by default)")
	fl.Var(octalFlag{&cfg.FileMode}, "file-mode", "permission bits (octal `MODE`) of files that carry none")
	fl.Var(octalFlag{&cfg.DirMode}, "dir-mode", "permission bits (octal `MODE`) of directories that carry none")
	fl.BoolVar(&cfg.ReadOnly, "read-only", false, "mount read-only: every change fails with EROFS")
	fl.BoolVar(&cfg.FastClose, "fast-close", false, "close returns once the data is in partfs's write buffer and the upload runs in the background; only fsync (of the file or a directory above it), unmount and SIGTERM wait for it, and a crash loses files closed but not yet uploaded (README, \"Fast close\")")
	fl.IntVar(&cfg.PutConcurrency, "put-concurrency", 16, "with --fast-close, `N` closed files uploaded at once")
	fl.DurationVar(&cfg.UploadDelay, "upload-delay", 500*time.Millisecond, "with --fast-close, how long a closed file waits before its upload starts, so that a rename, chmod or unlink right after close is applied first (`DURATION`)")
	fl.StringVar(&cfg.OnConflict, "on-conflict", conflictCopy, "when another host stored a file first: `MODE` copy (the close fails with ESTALE and these bytes are stored as NAME.partfs-conflict-TIME-HOST), error (ESTALE only), or overwrite (no preconditions: the last close wins, for servers without conditional writes)")
	fl.BoolVar(&cfg.AllowOther, "allow-other", false, "let other users use the mount; implies --default-permissions")
	fl.BoolVar(&cfg.DefaultPermissions, "default-permissions", false, "have the kernel check the permission bits of every access")

	cfg.AbortUploadsOlderThan = defaultAbortAge
	fl.Var(ageFlag{&cfg.AbortUploadsOlderThan}, "abort-uploads-older-than",
		"at mount, abort multipart uploads under the prefix started more than `AGE` ago, and delete staged parts left behind as old (e.g. 24h, 7d; 0: all; off: none); it must exceed the longest write of any mount of the bucket")
	fl.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:9464")

	fl.BoolVar(&cfg.Foreground, "f", false, "shorthand for --foreground")
	fl.BoolVar(&cfg.Foreground, "foreground", false, "stay in the foreground and log to stderr")
	fl.BoolVar(&cfg.Debug, "debug", false, "log debug messages, including every FUSE operation and S3 request")
	fl.BoolVar(&cfg.Sloppy, "sloppy", false, "ignore -o options that name no flag (mount -s)")
	fl.Var(&mountOptions{fl: fl, cfg: cfg}, "o", "mount `OPTIONS`, comma-separated: any flag as name or name=value (allow_other, uid=1000, ...), ro, rw, and mount(8)'s generic options")
	fl.SetOutput(io.Discard)
	return fl
}

// The --on-conflict modes.
const (
	conflictCopy      = "copy"
	conflictError     = "error"
	conflictOverwrite = "overwrite"
)

// printUsage writes the help text.
func printUsage(w io.Writer) {
	fl := newFlagSet(&config{})
	fl.SetOutput(w)
	fmt.Fprint(w, usageHead)
	fl.PrintDefaults()
}

// parseOperands parses args with fl, letting flags come before, between and
// after the operands, as in fstab-style invocations, and returns the
// operands. "--" ends the flags.
func parseOperands(fl *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err.Error()}
		}
		if fl.NArg() == 0 {
			return operands, nil
		}
		if len(args) > fl.NArg() && args[len(args)-fl.NArg()-1] == "--" {
			return append(operands, fl.Args()...), nil
		}
		operands = append(operands, fl.Arg(0))
		args = fl.Args()[1:]
	}
}

// parseArgs reads the command line of a mount.
func parseArgs(args []string) (*config, error) {
	cfg := &config{}
	fl := newFlagSet(cfg)
	operands, err := parseOperands(fl, args)
	if err != nil {
		return nil, err
	}
	if len(operands) != 2 {
		return nil, usageError{fmt.Sprintf("want BUCKET[:PREFIX] and MOUNTPOINT, got %d operand(s); see partfs --help", len(operands))}
	}
	if len(cfg.unknownOptions) > 0 && !cfg.Sloppy {
		return nil, usageError{fmt.Sprintf("unknown mount option %q; see partfs --help (--sloppy or mount -s ignores unknown options)", cfg.unknownOptions[0])}
	}
	if err := cfg.connConfig.finish(fl); err != nil {
		return nil, err
	}
	if err := cfg.setBucket(operands[0]); err != nil {
		return nil, usageError{err.Error()}
	}
	if cfg.Mountpoint, err = filepath.Abs(operands[1]); err != nil {
		return nil, err
	}
	if err := cfg.checkEncryption(); err != nil {
		return nil, usageError{err.Error()}
	}
	if cfg.SSECKeyFile != "" {
		if cfg.SSECKeyFile, err = filepath.Abs(cfg.SSECKeyFile); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil {
			return nil, usageError{fmt.Sprintf("--metrics-addr %q: want HOST:PORT, e.g. 127.0.0.1:9464", cfg.MetricsAddr)}
		}
	}
	if cfg.AllowOther {
		cfg.DefaultPermissions = true
	}
	if err := cfg.checkSizes(); err != nil {
		return nil, usageError{err.Error()}
	}
	return cfg, nil
}

// setBucket splits BUCKET[:PREFIX] and checks both halves.
func (cfg *config) setBucket(arg string) error {
	bucket, prefix, err := splitBucket(arg)
	if err != nil {
		return err
	}
	cfg.Bucket, cfg.Prefix = bucket, prefix
	return nil
}

// splitBucket splits BUCKET[:PREFIX]; the prefix comes back empty or
// ending in "/".
func splitBucket(arg string) (bucket, prefix string, err error) {
	bucket, prefix, _ = strings.Cut(arg, ":")
	if bucket == "" || strings.ContainsAny(bucket, "/ \t\n") {
		return "", "", fmt.Errorf("invalid bucket %q: want a bucket name, optionally followed by :PREFIX", bucket)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("invalid prefix %q: empty, \".\" and \"..\" path segments cannot be mounted", prefix)
			}
		}
		prefix += "/"
	}
	return bucket, prefix, nil
}

// checkEncryption normalizes --sse and refuses combinations S3 refuses.
func (cfg *config) checkEncryption() error {
	switch strings.ToLower(cfg.SSE) {
	case "":
	case "aes256":
		cfg.SSE = "AES256"
	case "aws:kms":
		cfg.SSE = "aws:kms"
	default:
		return fmt.Errorf("--sse %q: want AES256 (S3-managed keys) or aws:kms; for customer keys use --sse-c-key-file", cfg.SSE)
	}
	if cfg.SSEKMSKeyID != "" && cfg.SSE != "aws:kms" {
		return errors.New("--sse-kms-key-id needs --sse aws:kms")
	}
	if cfg.SSECKeyFile != "" && cfg.SSE != "" {
		return fmt.Errorf("--sse-c-key-file (a customer key) cannot be combined with --sse %s: an object has one kind of encryption", cfg.SSE)
	}
	return nil
}

// checkSizes explains the limits that the sizes must respect.
func (cfg *config) checkSizes() error {
	switch {
	case cfg.PartSize < store.MinPartSize:
		return fmt.Errorf("--part-size %s is too small: S3 refuses parts under 5MiB (except the last)", formatSize(cfg.PartSize))
	case cfg.PartSize > store.MaxPartSize:
		return fmt.Errorf("--part-size %s is too large: S3 refuses parts over 5GiB", formatSize(cfg.PartSize))
	case cfg.WriteBuffer < 2*cfg.PartSize:
		return fmt.Errorf("--write-buffer %s is too small: it must hold at least two parts (%s with --part-size %s), one uploading while the next fills",
			formatSize(cfg.WriteBuffer), formatSize(2*cfg.PartSize), formatSize(cfg.PartSize))
	case cfg.UploadConcurrency < 1:
		return fmt.Errorf("--upload-concurrency %d: at least one upload must be allowed", cfg.UploadConcurrency)
	case cfg.OnConflict != conflictCopy && cfg.OnConflict != conflictError && cfg.OnConflict != conflictOverwrite:
		return fmt.Errorf("--on-conflict %q: want copy, error or overwrite", cfg.OnConflict)
	case cfg.UploadDelay < 0:
		return errors.New("--upload-delay must not be negative")
	case cfg.PutConcurrency < 1:
		return fmt.Errorf("--put-concurrency %d: at least one upload must be allowed", cfg.PutConcurrency)
	case cfg.FastClose && cfg.ReadOnly:
		return errors.New("--fast-close and --read-only: a read-only mount closes nothing it writes")
	case cfg.CacheSize < 0:
		return errors.New("--cache-size must not be negative")
	case cfg.ReadAhead < 0:
		return errors.New("--read-ahead must not be negative")
	case cfg.MaxRequest <= 0:
		return errors.New("--max-request must be positive")
	case cfg.MaxRequest > 64<<20:
		return fmt.Errorf("--max-request %s is too large: every request being read holds a buffer of this size; at most 64MiB", formatSize(cfg.MaxRequest))
	case cfg.StatTTL < 0 || cfg.NegativeTTL < 0:
		return errors.New("--stat-ttl and --negative-ttl must not be negative")
	}
	return nil
}

// checkMountpoint refuses mount points that are missing, not directories,
// or not empty (mounting would hide their files), and stale mounts.
func checkMountpoint(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist", dir)
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mountpoint %s is a dead mount (transport endpoint is not connected); run: umount %s", dir, dir)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty; mounting would hide its files", dir)
	}
	return nil
}

// checkFiles checks the files the flags name, the SSE-C key included.
func (cfg *config) checkFiles() error {
	if err := cfg.connConfig.checkFiles(); err != nil {
		return err
	}
	if cfg.SSECKeyFile != "" {
		if _, err := readCustomerKey(cfg.SSECKeyFile); err != nil {
			return err
		}
	}
	return checkMountpoint(cfg.Mountpoint)
}
