package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"time"

	"github.com/partfs/partfs/fs"
	"github.com/partfs/partfs/store"
)

// probeTimeout bounds the probe of conditional writes at mount.
const probeTimeout = 30 * time.Second

// probeConditional asks the server, under the mount's stage prefix,
// whether it honours conditional writes (store.ProbeConditional) and
// conditional deletes (store.ProbeConditionalDelete), and reports whether
// partfs should send each. A server that refuses or ignores conditional
// writes is said so, once, at mount: writers on other hosts can then
// replace each other's files in silence, as with --on-conflict overwrite. A
// probe that fails for another reason leaves them on.
func probeConditional(ctx context.Context, st store.Store, cfg *config, log *slog.Logger) (writes, deletes bool) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	key := func(what string) string {
		var b [8]byte
		rand.Read(b[:])
		return fs.StagePrefix(cfg.Prefix) + what + "-probe-" + hex.EncodeToString(b[:])
	}
	support, err := store.ProbeConditional(ctx, st, key("conditional"))
	switch {
	case err != nil:
		log.Warn("could not check whether the server honours conditional writes; sending them", "err", err)
		return true, false
	case support == store.ConditionalRejected:
		log.Warn("the server refuses conditional writes (NotImplemented): partfs cannot detect another host's write of the same file, and writes as with --on-conflict overwrite (the last close wins)")
		return false, false
	case support == store.ConditionalIgnored:
		log.Warn("the server ignores conditional writes: partfs cannot detect another host's write of the same file, and writes as with --on-conflict overwrite (the last close wins)")
		return false, false
	}
	del, err := store.ProbeConditionalDelete(ctx, st, key("delete"))
	deletes = err == nil && del == store.ConditionalSupported
	if !deletes {
		log.Info("the server does not honour If-Match on DeleteObject: rename checks the old name's version with a HEAD before deleting it, which leaves another host one round trip to replace it unseen", "err", err)
	}
	log.Debug("the server honours conditional writes", "conditional_delete", deletes)
	return true, deletes
}

// hostName names this machine in conflict copies.
func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}
