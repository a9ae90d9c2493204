package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/s3"
)

// Multipart uploads left behind
//
// A crash or kill -9 in the middle of a write leaves a multipart upload
// whose parts cost storage until it is aborted. partfs cannot tell its own
// uploads from others' by looking at the bucket: ListMultipartUploads gives
// only key, upload ID and start time, no metadata. So it goes by age and by
// what live mounts say:
//
//   - an upload started less than the threshold ago may belong to a mount
//     still writing it, possibly on another machine, and is kept; the
//     threshold must therefore exceed the longest write any mount of the
//     bucket makes (24h by default at mount, 1h for partfs cleanup);
//   - an upload that a partfs mount on this machine reports as its own
//     (through its status socket) is kept whatever its age.

// defaultCleanupAge is the default of partfs cleanup --older-than.
const defaultCleanupAge = time.Hour

// abortTimeout bounds the cleanup done when mounting.
const abortTimeout = 30 * time.Second

// staleUploads splits ups into those that may be aborted, started at least
// olderThan before now (olderThan 0 takes all), and those kept because they
// are younger or in live.
func staleUploads(ups []store.Upload, now time.Time, olderThan time.Duration, live map[string]bool) (stale, kept []store.Upload) {
	for _, u := range ups {
		if live[u.UploadID] || (olderThan > 0 && now.Sub(u.Initiated) < olderThan) {
			kept = append(kept, u)
		} else {
			stale = append(stale, u)
		}
	}
	return stale, kept
}

// abortUploads aborts ups one after the other and returns how many it
// aborted; an upload found already gone counts as aborted.
func abortUploads(ctx context.Context, st store.Store, ups []store.Upload) (int, error) {
	return eachRemoved(ctx, ups, store.ErrNoSuchUpload, func(u store.Upload) error {
		if err := st.AbortMultipart(ctx, u.Key, u.UploadID); err != nil {
			return fmt.Errorf("abort upload of %q: %w", u.Key, err)
		}
		return nil
	})
}

// eachRemoved calls remove for every item, one after the other, and returns
// how many are gone: removed, or failing with gone (already removed). It
// goes on past failures, which it returns together, until ctx ends.
func eachRemoved[T any](ctx context.Context, items []T, gone error, remove func(T) error) (int, error) {
	var errs []error
	n := 0
	for _, item := range items {
		if err := remove(item); err != nil && !errors.Is(err, gone) {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// abortAbandoned aborts, at mount, the uploads under the mount's prefix that
// are older than the configured age and not live in another mount on this
// machine, and deletes the staged parts as old (staged.go). Failures are
// logged: they must not keep the bucket from being mounted.
func abortAbandoned(ctx context.Context, st store.Store, cfg *config, log *slog.Logger) {
	if cfg.AbortUploadsOlderThan < 0 || cfg.ReadOnly {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, abortTimeout)
	defer cancel()
	deleteAbandonedStaged(ctx, st, cfg, log)
	ups, err := st.ListMultipart(ctx, cfg.Prefix)
	if err != nil {
		log.Warn("could not list multipart uploads left behind", "prefix", cfg.Prefix, "err", err)
		return
	}
	if len(ups) == 0 {
		return
	}
	live, _ := localLiveUploads(ctx)
	stale, kept := staleUploads(ups, time.Now(), cfg.AbortUploadsOlderThan, live)
	n, err := abortUploads(ctx, st, stale)
	if n > 0 || err != nil {
		log.Info("aborted multipart uploads left behind", "prefix", cfg.Prefix,
			"older_than", formatAge(cfg.AbortUploadsOlderThan), "aborted", n, "kept", len(kept))
	}
	if err != nil {
		log.Warn("could not abort some multipart uploads left behind", "err", err)
	}
}

// cleanupConfig is the command line of partfs cleanup.
type cleanupConfig struct {
	connConfig
	Bucket, Prefix string
	Yes            bool
	OlderThan      time.Duration
}

const cleanupUsage = `Usage: partfs cleanup [--yes] [--older-than AGE] [flags] BUCKET[:PREFIX]

Lists the multipart uploads in progress under PREFIX (key, start time, age)
and aborts those started more than AGE ago, after asking on the terminal,
or at once with --yes. Then it does the same for the staged parts left
under PREFIX.partfs-stage/ (temporary objects of parts too large to buffer,
left by a mount that stopped while copying them into their file), deleting
those last modified more than AGE ago. Without a terminal and without --yes
it only lists.
Uploads that a partfs mount on this machine is still writing are never
aborted; uploads of mounts on other machines are safe only while younger
than AGE, so AGE must exceed the longest write.

Flags:
`

func newCleanupFlagSet(c *cleanupConfig) *flag.FlagSet {
	fl := flag.NewFlagSet("partfs cleanup", flag.ContinueOnError)
	c.connConfig.define(fl)
	fl.BoolVar(&c.Yes, "yes", false, "abort without asking")
	fl.BoolVar(&c.Yes, "y", false, "shorthand for --yes")
	c.OlderThan = defaultCleanupAge
	fl.Var(ageFlag{&c.OlderThan}, "older-than", "abort only uploads started more than `AGE` ago (e.g. 90m, 24h, 7d; 0: all)")
	fl.SetOutput(io.Discard)
	return fl
}

func parseCleanupArgs(args []string) (*cleanupConfig, error) {
	c := &cleanupConfig{}
	fl := newCleanupFlagSet(c)
	operands, err := parseOperands(fl, args)
	if err != nil {
		return nil, err
	}
	if len(operands) != 1 {
		return nil, usageError{fmt.Sprintf("want BUCKET[:PREFIX], got %d operand(s); see partfs cleanup --help", len(operands))}
	}
	if c.OlderThan < 0 {
		return nil, usageError{"--older-than off would abort nothing; give an age such as 24h, or 0 for all"}
	}
	if err := c.connConfig.finish(fl); err != nil {
		return nil, err
	}
	if c.Bucket, c.Prefix, err = splitBucket(operands[0]); err != nil {
		return nil, usageError{err.Error()}
	}
	return c, nil
}

// runCleanup is the cleanup command; it returns the exit status.
func runCleanup(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	c, err := parseCleanupArgs(args)
	var usage usageError
	switch {
	case errors.Is(err, errHelp):
		fl := newCleanupFlagSet(&cleanupConfig{})
		fl.SetOutput(stdout)
		fmt.Fprint(stdout, cleanupUsage)
		fl.PrintDefaults()
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "partfs cleanup:", usage.msg)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	ctx := context.Background()
	st, err := c.open(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	in := bufio.NewReader(stdin)
	ask := func(question string) bool {
		if c.Yes {
			return true
		}
		if !isTerminal(stdin) {
			fmt.Fprintf(stdout, "Nothing done: standard input is not a terminal. Run again with --yes to %s.\n", question)
			return false
		}
		fmt.Fprintf(stdout, "%s? [y/N] ", strings.ToUpper(question[:1])+question[1:])
		answer, _ := in.ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "Nothing done.")
			return false
		}
		return true
	}
	code := c.cleanUploads(ctx, st, ask, stdout, stderr)
	return max(code, c.cleanStaged(ctx, st, ask, stdout, stderr))
}

// cleanUploads lists the multipart uploads under the prefix and aborts the
// stale ones if ask agrees; it returns the exit status.
func (c *cleanupConfig) cleanUploads(ctx context.Context, st store.Store, ask func(string) bool, stdout, stderr io.Writer) int {
	ups, err := st.ListMultipart(ctx, c.Prefix)
	if err != nil {
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	where := "s3://" + c.Bucket + "/" + c.Prefix
	if len(ups) == 0 {
		fmt.Fprintf(stdout, "No multipart uploads in progress under %s.\n", where)
		return 0
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].Initiated.Before(ups[j].Initiated) })
	live, _ := localLiveUploads(ctx)
	now := time.Now()
	stale, _ := staleUploads(ups, now, c.OlderThan, live)
	printUploads(stdout, ups, now, c.OlderThan, live)
	age := ""
	if c.OlderThan > 0 {
		age = " started more than " + formatAge(c.OlderThan) + " ago and"
	}
	fmt.Fprintf(stdout, "\n%d multipart upload(s) in progress under %s; %d of them%s not being written by a partfs mount on this machine.\n",
		len(ups), where, len(stale), age)
	if len(stale) == 0 || !ask(fmt.Sprintf("abort the %d upload(s) (their parts are deleted)", len(stale))) {
		return 0
	}
	n, err := abortUploads(ctx, st, stale)
	fmt.Fprintf(stdout, "Aborted %d upload(s).\n", n)
	if err != nil {
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	return 0
}

// open connects to the bucket and checks it.
func (c *cleanupConfig) open(ctx context.Context) (store.Store, error) {
	if err := c.connConfig.checkFiles(); err != nil {
		return nil, err
	}
	bucket, err := s3.New(ctx, c.connConfig.s3Options(c.Bucket, nil))
	if err != nil {
		return nil, err
	}
	if err := bucket.CheckBucket(ctx); err != nil {
		return nil, err
	}
	return store.WithRetry(bucket, c.connConfig.retryOptions(nil)), nil
}

// printUploads writes one line per upload, marking those that are kept.
func printUploads(w io.Writer, ups []store.Upload, now time.Time, olderThan time.Duration, live map[string]bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTARTED\tAGE\t")
	for _, u := range ups {
		note := ""
		switch {
		case live[u.UploadID]:
			note = "kept: a partfs mount on this machine is writing it"
		case olderThan > 0 && now.Sub(u.Initiated) < olderThan:
			note = "kept: younger than --older-than"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Key, u.Initiated.Local().Format(time.DateTime),
			now.Sub(u.Initiated).Truncate(time.Second), note)
	}
	tw.Flush()
}

// isTerminal reports whether f is a terminal, where someone can answer.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
