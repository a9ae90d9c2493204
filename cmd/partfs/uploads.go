package main

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/partfs/partfs/store"
)

// liveUploads is a store.Store that remembers the multipart uploads this
// mount has started and not yet completed or aborted. `partfs status` shows
// them, and `partfs cleanup` and other mounts starting on this machine ask
// for them so as never to abort an upload that a live mount is still
// writing.
type liveUploads struct {
	store.Store

	mu  sync.Mutex
	ids map[string]string // guarded by mu; upload ID -> key
}

func newLiveUploads(s store.Store) *liveUploads {
	return &liveUploads{Store: s, ids: make(map[string]string)}
}

func (l *liveUploads) CreateMultipart(ctx context.Context, key string, opts store.PutOptions) (string, error) {
	id, err := l.Store.CreateMultipart(ctx, key, opts)
	if err == nil {
		l.mu.Lock()
		l.ids[id] = key
		l.mu.Unlock()
	}
	return id, err
}

func (l *liveUploads) CompleteMultipart(ctx context.Context, key, uploadID string, parts []store.Part, cond store.Condition) (store.Object, error) {
	obj, err := l.Store.CompleteMultipart(ctx, key, uploadID, parts, cond)
	if err == nil || errors.Is(err, store.ErrNoSuchUpload) {
		l.forget(uploadID)
	}
	return obj, err
}

func (l *liveUploads) AbortMultipart(ctx context.Context, key, uploadID string) error {
	err := l.Store.AbortMultipart(ctx, key, uploadID)
	if err == nil || errors.Is(err, store.ErrNoSuchUpload) {
		l.forget(uploadID)
	}
	return err
}

func (l *liveUploads) forget(id string) {
	l.mu.Lock()
	delete(l.ids, id)
	l.mu.Unlock()
}

// liveUpload names one upload in progress.
type liveUpload struct {
	Key      string `json:"key"`
	UploadID string `json:"upload_id"`
}

// list returns the uploads in progress, sorted by key.
func (l *liveUploads) list() []liveUpload {
	l.mu.Lock()
	out := make([]liveUpload, 0, len(l.ids))
	for id, key := range l.ids {
		out = append(out, liveUpload{Key: key, UploadID: id})
	}
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
