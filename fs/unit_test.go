package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/writeback"
)

func TestToErrno(t *testing.T) {
	fsys := &filesystem{log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("stat %q: %w", "k", store.ErrNotExist), syscall.ENOENT},
		{fmt.Errorf("put: %w", store.ErrAccessDenied), syscall.EACCES},
		{fmt.Errorf("part: %w", store.ErrTooLarge), syscall.EFBIG},
		{fmt.Errorf("get: %w", store.ErrPrecondition), syscall.ESTALE},
		{fmt.Errorf("wait: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("retry: %w: %w", store.ErrTransient, context.Canceled), syscall.EINTR},
		{writeback.ErrBufferExhausted, syscall.ENOSPC},
		{fmt.Errorf("upload: %w", store.ErrTransient), syscall.EIO},
		{errors.New("something else"), syscall.EIO},
	}
	for _, tt := range tests {
		if got := fsys.toErrno("op", "key", tt.err); got != tt.want {
			t.Errorf("toErrno(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	a := attrs{perm: 0o640, uid: 1000, gid: 100, mtime: time.Unix(1700000000, 0)}
	md := a.metadata(store.Metadata{"other": "kept"}, syscall.S_IFREG)
	want := store.Metadata{"mode": "33184", "uid": "1000", "gid": "100", "mtime": "1700000000", "other": "kept"}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("metadata[%q] = %q, want %q", k, md[k], v)
		}
	}
	if got := (attrs{}).withMetadata(md); got != a {
		t.Errorf("parsed back %+v, want %+v", got, a)
	}
}

func TestWithMetadata(t *testing.T) {
	def := attrs{perm: 0o644, uid: 1, gid: 2, mtime: time.Unix(5, 0)}
	tests := []struct {
		name string
		md   store.Metadata
		want attrs
	}{
		{"none", nil, def},
		{"s3fs directory", store.Metadata{"mode": "16877"}, attrs{perm: 0o755, uid: 1, gid: 2, mtime: time.Unix(5, 0)}},
		{"bare permissions", store.Metadata{"mode": "384"}, attrs{perm: 0o600, uid: 1, gid: 2, mtime: time.Unix(5, 0)}},
		{"fractional mtime", store.Metadata{"mtime": "1700000000.5"}, attrs{perm: 0o644, uid: 1, gid: 2, mtime: time.Unix(1700000000, 0)}},
		{"garbage ignored", store.Metadata{"mode": "rw-r--r--", "uid": "-1", "mtime": "yesterday"}, def},
		{"owner", store.Metadata{"uid": "1000", "gid": "1001"}, attrs{perm: 0o644, uid: 1000, gid: 1001, mtime: time.Unix(5, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := def.withMetadata(tt.md); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	r, err := New(Options{Store: nopStore{}, ReadOnly: true, Prefix: "data"})
	if err != nil {
		t.Fatal(err)
	}
	if r.prefixNow() != "data/" || r.fsys.opts.FileMode != 0o644 || r.fsys.opts.DirMode != 0o755 {
		t.Errorf("defaults: prefix %q modes %o %o", r.prefix, r.fsys.opts.FileMode, r.fsys.opts.DirMode)
	}
	if _, err := New(Options{Store: nopStore{}}); err == nil {
		t.Error("New without a writer for a writable mount succeeded")
	}
}

// nopStore is a store.Store for tests that never reach it.
type nopStore struct{ store.Store }
