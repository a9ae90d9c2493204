package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/partfs/partfs/fs"
	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/writeback"
)

// Staged parts left behind
//
// A part too large to buffer whole is staged as a temporary object under
// the mount's stage prefix (fs.StagePrefix) and deleted once it has been
// copied into its file's upload, seconds to minutes later. A crash in
// between leaves the object, which costs storage like any other. Such
// objects are found by their key (writeback.IsStageKey) and removed by the
// same age rule as uploads: at mount when older than
// --abort-uploads-older-than, by partfs cleanup when older than
// --older-than. A live mount's staged object younger than that is never
// touched; an older one would only make that mount's close fail, never lose
// data silently.

// staleStaged lists the staged objects under the stage prefix of prefix that
// were last modified at least olderThan before now (0: all).
func staleStaged(ctx context.Context, st store.Store, prefix string, now time.Time, olderThan time.Duration) ([]store.Object, error) {
	stagePrefix := fs.StagePrefix(prefix)
	var out []store.Object
	token := ""
	for {
		page, err := st.List(ctx, stagePrefix, "", token, 0)
		if err != nil {
			return nil, fmt.Errorf("list staged parts under %q: %w", stagePrefix, err)
		}
		for _, obj := range page.Objects {
			if writeback.IsStageKey(stagePrefix, obj.Key) && (olderThan == 0 || now.Sub(obj.LastModified) >= olderThan) {
				out = append(out, obj)
			}
		}
		if token = page.Next; token == "" {
			return out, nil
		}
	}
}

// deleteStaged deletes objs one after the other and returns how many are
// gone.
func deleteStaged(ctx context.Context, st store.Store, objs []store.Object) (int, error) {
	return eachRemoved(ctx, objs, store.ErrNotExist, func(obj store.Object) error {
		if err := st.Delete(ctx, obj.Key); err != nil {
			return fmt.Errorf("delete staged part %q: %w", obj.Key, err)
		}
		return nil
	})
}

// deleteAbandonedStaged deletes, at mount, the staged objects older than
// the configured age. Failures are logged: they must not keep the bucket
// from being mounted.
func deleteAbandonedStaged(ctx context.Context, st store.Store, cfg *config, log *slog.Logger) {
	objs, err := staleStaged(ctx, st, cfg.Prefix, time.Now(), cfg.AbortUploadsOlderThan)
	if err != nil {
		log.Warn("could not list staged parts left behind", "err", err)
		return
	}
	n, err := deleteStaged(ctx, st, objs)
	if n > 0 {
		log.Info("deleted staged parts left behind", "prefix", fs.StagePrefix(cfg.Prefix),
			"older_than", formatAge(cfg.AbortUploadsOlderThan), "deleted", n)
	}
	if err != nil {
		log.Warn("could not delete some staged parts left behind", "err", err)
	}
}

// cleanStaged lists the staged objects older than --older-than and deletes
// them if ask agrees; it returns the exit status.
func (c *cleanupConfig) cleanStaged(ctx context.Context, st store.Store, ask func(string) bool, stdout, stderr io.Writer) int {
	now := time.Now()
	objs, err := staleStaged(ctx, st, c.Prefix, now, c.OlderThan)
	if err != nil {
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	if len(objs) == 0 {
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSTAGED PART\tMODIFIED\tAGE\tSIZE")
	for _, obj := range objs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", obj.Key, obj.LastModified.Local().Format(time.DateTime),
			now.Sub(obj.LastModified).Truncate(time.Second), obj.Size)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d staged part(s) left behind under s3://%s/%s (temporary objects of a mount that stopped while copying them into a file).\n",
		len(objs), c.Bucket, fs.StagePrefix(c.Prefix))
	if !ask(fmt.Sprintf("delete the %d staged part(s)", len(objs))) {
		return 0
	}
	n, err := deleteStaged(ctx, st, objs)
	fmt.Fprintf(stdout, "Deleted %d staged part(s).\n", n)
	if err != nil {
		fmt.Fprintln(stderr, "partfs cleanup:", oneLine(err))
		return 1
	}
	return 0
}
