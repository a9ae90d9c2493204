package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/partfs/partfs/store"
)

// config is everything the command line says.
type config struct {
	Bucket     string
	Prefix     string // "" or ending in "/"
	Mountpoint string // absolute

	Endpoint  string
	Region    string
	Profile   string
	PathStyle bool
	CABundle  string // absolute when set

	PartSize          int64
	UploadConcurrency int
	WriteBuffer       int64
	CacheSize         int64

	UID, GID          uint32
	FileMode, DirMode uint32
	ReadOnly          bool
	AllowOther        bool

	Foreground bool
	Debug      bool
}

// errHelp asks for the usage text and a successful exit.
var errHelp = flag.ErrHelp

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageHead = `Usage: partfs [flags] BUCKET[:PREFIX] MOUNTPOINT

Mounts an S3 bucket, or the keys under PREFIX in it, on MOUNTPOINT.
Credentials come from the usual AWS sources: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared config and credentials files (--profile),
or the instance's role. Sizes take K, M, G or T (powers of 1024), e.g. 8MiB.
Flags may be written with one dash or two.

Flags:
`

// newFlagSet defines the flags on cfg, with their defaults.
func newFlagSet(cfg *config) *flag.FlagSet {
	fl := flag.NewFlagSet("partfs", flag.ContinueOnError)
	fl.StringVar(&cfg.Endpoint, "endpoint", "", "S3 endpoint `URL`, e.g. http://127.0.0.1:9000 (default: AWS)")
	fl.StringVar(&cfg.Region, "region", "", "signing `REGION` (default: from the AWS configuration, else us-east-1)")
	fl.StringVar(&cfg.Profile, "profile", "", "`NAME` of a profile in the shared AWS configuration files")
	fl.BoolVar(&cfg.PathStyle, "path-style", false, "path-style bucket addressing (default: on when --endpoint is given)")
	fl.StringVar(&cfg.CABundle, "ca-bundle", "", "PEM `FILE` of extra certificate authorities to trust")

	cfg.PartSize, cfg.WriteBuffer, cfg.CacheSize = 8<<20, 512<<20, 256<<20
	fl.Var(sizeFlag{&cfg.PartSize}, "part-size", "`SIZE` of the parts uploaded while a file is written; at least 5MiB")
	fl.IntVar(&cfg.UploadConcurrency, "upload-concurrency", 4, "`N` parts uploaded at once, across all files")
	fl.Var(sizeFlag{&cfg.WriteBuffer}, "write-buffer", "`SIZE` of memory for data written but not yet uploaded; at least twice --part-size")
	fl.Var(sizeFlag{&cfg.CacheSize}, "cache-size", "`SIZE` of memory for the read cache; 0 turns it off")

	cfg.UID, cfg.GID = uint32(os.Getuid()), uint32(os.Getgid())
	cfg.FileMode, cfg.DirMode = 0o644, 0o755
	fl.Var(idFlag{&cfg.UID}, "uid", "user `ID` owning objects that carry no owner (your own by default)")
	fl.Var(idFlag{&cfg.GID}, "gid", "group `ID` of objects that carry no group (your own by default)")
	fl.Var(octalFlag{&cfg.FileMode}, "file-mode", "permission bits (octal `MODE`) of files that carry none")
	fl.Var(octalFlag{&cfg.DirMode}, "dir-mode", "permission bits (octal `MODE`) of directories that carry none")
	fl.BoolVar(&cfg.ReadOnly, "read-only", false, "mount read-only")
	fl.BoolVar(&cfg.AllowOther, "allow-other", false, "let other users use the mount (permissions are then checked)")

	fl.BoolVar(&cfg.Foreground, "f", false, "shorthand for --foreground")
	fl.BoolVar(&cfg.Foreground, "foreground", false, "stay in the foreground and log to stderr")
	fl.BoolVar(&cfg.Debug, "debug", false, "log debug messages, including every FUSE request")
	fl.SetOutput(io.Discard)
	return fl
}

// printUsage writes the help text.
func printUsage(w io.Writer) {
	fl := newFlagSet(&config{})
	fl.SetOutput(w)
	fmt.Fprint(w, usageHead)
	fl.PrintDefaults()
}

// parseArgs reads the command line. Flags may come before, between and after
// the two operands, as in fstab-style invocations.
func parseArgs(args []string) (*config, error) {
	cfg := &config{}
	fl := newFlagSet(cfg)
	var operands []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err.Error()}
		}
		if fl.NArg() == 0 {
			break
		}
		// "--" ends the flags: everything after it is an operand.
		if len(args) > fl.NArg() && args[len(args)-fl.NArg()-1] == "--" {
			operands = append(operands, fl.Args()...)
			break
		}
		operands = append(operands, fl.Arg(0))
		args = fl.Args()[1:]
	}
	if len(operands) != 2 {
		return nil, usageError{fmt.Sprintf("want BUCKET[:PREFIX] and MOUNTPOINT, got %d operand(s); see partfs --help", len(operands))}
	}
	pathStyleSet := false
	fl.Visit(func(f *flag.Flag) { pathStyleSet = pathStyleSet || f.Name == "path-style" })
	if !pathStyleSet && cfg.Endpoint != "" {
		cfg.PathStyle = true
	}
	if err := cfg.setBucket(operands[0]); err != nil {
		return nil, usageError{err.Error()}
	}
	var err error
	if cfg.Mountpoint, err = filepath.Abs(operands[1]); err != nil {
		return nil, err
	}
	if cfg.CABundle != "" {
		if cfg.CABundle, err = filepath.Abs(cfg.CABundle); err != nil {
			return nil, err
		}
	}
	if err := cfg.checkSizes(); err != nil {
		return nil, usageError{err.Error()}
	}
	return cfg, nil
}

// setBucket splits BUCKET[:PREFIX] and checks both halves.
func (cfg *config) setBucket(arg string) error {
	bucket, prefix, _ := strings.Cut(arg, ":")
	if bucket == "" || strings.ContainsAny(bucket, "/ \t\n") {
		return fmt.Errorf("invalid bucket %q: want a bucket name, optionally followed by :PREFIX", bucket)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return fmt.Errorf("invalid prefix %q: empty, \".\" and \"..\" path segments cannot be mounted", prefix)
			}
		}
		prefix += "/"
	}
	cfg.Bucket, cfg.Prefix = bucket, prefix
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
	case cfg.CacheSize < 0:
		return errors.New("--cache-size must not be negative")
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

// checkFiles checks the files the flags name.
func (cfg *config) checkFiles() error {
	if cfg.CABundle != "" {
		f, err := os.Open(cfg.CABundle)
		if err != nil {
			return fmt.Errorf("--ca-bundle: %w", err)
		}
		f.Close()
	}
	return checkMountpoint(cfg.Mountpoint)
}
