package writeback

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/partfs/partfs/store"
)

// Unsaved is a file whose changes could not be stored: the application was
// told (by close or fsync), and the mount reports it until a later write of
// the same name is stored.
type Unsaved struct {
	Key string
	At  time.Time
	Err string
}

// failures remembers the files that could not be stored and the multipart
// uploads whose abort failed, for the end of the mount.
type failures struct {
	mu       sync.Mutex
	unsaved  map[string]Unsaved // guarded by mu
	leftover map[string]string  // guarded by mu; upload ID → key
}

func newFailures() *failures {
	return &failures{unsaved: map[string]Unsaved{}, leftover: map[string]string{}}
}

func (f *failures) failed(key string, err error) {
	f.mu.Lock()
	f.unsaved[key] = Unsaved{Key: key, At: time.Now(), Err: err.Error()}
	f.mu.Unlock()
}

func (f *failures) stored(key string) {
	f.mu.Lock()
	delete(f.unsaved, key)
	f.mu.Unlock()
}

// moved follows a file whose changes moved from one key to another.
func (f *failures) moved(from, to string) {
	f.mu.Lock()
	if u, ok := f.unsaved[from]; ok {
		delete(f.unsaved, from)
		u.Key = to
		f.unsaved[to] = u
	}
	f.mu.Unlock()
}

func (f *failures) abortFailed(key, id string) {
	f.mu.Lock()
	f.leftover[id] = key
	f.mu.Unlock()
}

// Unsaved lists the files whose changes could not be stored, by key.
func (w *Writer) Unsaved() []Unsaved {
	w.failures.mu.Lock()
	out := make([]Unsaved, 0, len(w.failures.unsaved))
	for _, u := range w.failures.unsaved {
		out = append(out, u)
	}
	w.failures.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// RetryAborts tries again to abort the multipart uploads whose abort
// failed (S3 was unreachable then), so that their parts stop costing
// money, and returns those still left, for `partfs cleanup`.
func (w *Writer) RetryAborts(ctx context.Context) []store.Upload {
	w.failures.mu.Lock()
	todo := make(map[string]string, len(w.failures.leftover))
	for id, key := range w.failures.leftover {
		todo[id] = key
	}
	w.failures.mu.Unlock()
	var left []store.Upload
	for id, key := range todo {
		err := w.st.AbortMultipart(ctx, key, id)
		if err == nil || errors.Is(err, store.ErrNoSuchUpload) {
			w.failures.mu.Lock()
			delete(w.failures.leftover, id)
			w.failures.mu.Unlock()
			w.log.Info("multipart upload left by a failed write aborted", "key", key)
			continue
		}
		left = append(left, store.Upload{Key: key, UploadID: id})
	}
	sort.Slice(left, func(i, j int) bool { return left[i].Key < left[j].Key })
	return left
}
