// Command partfs mounts an S3 bucket as a directory.
//
//	partfs [flags] BUCKET[:PREFIX] MOUNTPOINT
//	partfs cleanup [--yes] [--older-than AGE] [flags] BUCKET[:PREFIX]
//	partfs status [--json] MOUNTPOINT
//	partfs version (or partfs --version)
//
// By default it checks the bucket, mounts, and returns once the mount is live,
// leaving a daemon to serve it; -f keeps it in the foreground, logging to
// stderr. SIGINT or SIGTERM stores every file with unsaved changes, then
// unmounts; umount(8) ends it too, and a second signal ends it at once.
// Installed as mount.fuse.partfs it is the helper that mount(8) runs for
// /etc/fstab lines of type fuse.partfs (see options.go). `partfs cleanup`
// lists and aborts the multipart uploads a crash left behind (cleanup.go),
// and `partfs status` prints a running mount's figures (status.go). Run
// partfs --help for the flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
)

func main() {
	ensureHome()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "cleanup":
			os.Exit(runCleanup(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "status":
			os.Exit(runStatus(os.Args[2:], os.Stdout, os.Stderr))
		case "version", "--version", "-version":
			os.Exit(runVersion(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	args := os.Args[1:]
	fake := false
	if isMountHelper(os.Args[0]) {
		var err error
		if args, fake, err = helperArgs(args); err != nil {
			fmt.Fprintln(os.Stderr, "partfs:", err)
			os.Exit(2)
		}
	}
	os.Exit(run(args, fake))
}

// run mounts as args say and returns the exit status. fake checks
// everything a mount would check without mounting (mount -f).
func run(args []string, fake bool) int {
	cfg, err := parseArgs(args)
	var usage usageError
	switch {
	case errors.Is(err, errHelp):
		printUsage(os.Stdout)
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "partfs:", usage.msg)
		return 2
	case err != nil:
		return fail(err)
	}
	if isDaemonChild() {
		return runDaemonChild(cfg)
	}
	// Cheap checks first, in the calling process, so that their errors come
	// back at once.
	if err := cfg.checkFiles(); err != nil {
		return fail(err)
	}
	if fake {
		return 0
	}
	if !cfg.Foreground {
		return startDaemon(args)
	}
	signals := catchSignals()
	m, err := mount(context.Background(), cfg, newLogger(cfg))
	if err != nil {
		return fail(err)
	}
	return m.serve(signals)
}

// fail prints err as the one line a failed command leaves and returns 1.
func fail(err error) int {
	fmt.Fprintln(os.Stderr, "partfs:", oneLine(err))
	return 1
}

// ensureHome sets HOME when it is missing, as it is for mounts that systemd
// starts from /etc/fstab, so that the AWS shared configuration and
// credentials files (~/.aws) are found.
func ensureHome() {
	if os.Getenv("HOME") != "" {
		return
	}
	if u, err := user.Current(); err == nil && u.HomeDir != "" {
		os.Setenv("HOME", u.HomeDir)
	}
}
