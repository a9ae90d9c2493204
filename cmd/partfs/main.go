// Command partfs mounts an S3 bucket as a directory.
//
//	partfs [flags] BUCKET[:PREFIX] MOUNTPOINT
//
// By default it checks the bucket, mounts, and returns once the mount is live,
// leaving a daemon to serve it; -f keeps it in the foreground, logging to
// stderr. SIGINT or SIGTERM stores every file with unsaved changes, then
// unmounts; umount(8) ends it too. Run partfs --help for the flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is the whole command; it returns the exit status.
func run(args []string) int {
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
	if !cfg.Foreground {
		return startDaemon(args)
	}
	m, err := mount(context.Background(), cfg, newLogger(cfg))
	if err != nil {
		return fail(err)
	}
	return m.serve()
}

// fail prints err as the one line a failed command leaves and returns 1.
func fail(err error) int {
	fmt.Fprintln(os.Stderr, "partfs:", oneLine(err))
	return 1
}
