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
	mtime := time.Unix(1700000000, 0)
	tests := []struct {
		name string
		a    attrs
		typ  uint32
		want store.Metadata
		omit []string
	}{
		{"file", attrs{perm: 0o640, uid: 1000, gid: 100, mtime: mtime, atime: mtime, ctime: mtime}, syscall.S_IFREG,
			store.Metadata{"mode": "33184", "uid": "1000", "gid": "100", "mtime": "1700000000", "other": "kept"}, []string{"atime", "rdev"}},
		{"atime apart, nanoseconds", attrs{perm: 0o644, mtime: time.Unix(1700000000, 250000000), atime: time.Unix(100000000, 1), ctime: mtime}, syscall.S_IFREG,
			store.Metadata{"mode": "33188", "mtime": "1700000000.250000000", "atime": "100000000.000000001"}, []string{"rdev"}},
		{"fifo", attrs{perm: 0o600, mtime: mtime, atime: mtime, ctime: mtime}, syscall.S_IFIFO,
			store.Metadata{"mode": "4480"}, []string{"rdev"}},
		{"char device", attrs{perm: 0o644, mtime: mtime, atime: mtime, ctime: mtime, rdev: 0x0103}, syscall.S_IFCHR,
			store.Metadata{"mode": "8612", "rdev": "259"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := tt.a.metadata(store.Metadata{"other": "kept", "atime": "1", "rdev": "1"}, tt.typ)
			for k, v := range tt.want {
				if md[k] != v {
					t.Errorf("metadata[%q] = %q, want %q", k, md[k], v)
				}
			}
			for _, k := range tt.omit {
				if v, ok := md[k]; ok {
					t.Errorf("metadata[%q] = %q, want none", k, v)
				}
			}
			// The ctime is not stored: it comes back as the object's
			// LastModified, which the defaults carry.
			got := attrs{ctime: tt.a.ctime}.withMetadata(md)
			if !got.mtime.Equal(tt.a.mtime) || !got.atime.Equal(tt.a.atime) || got.perm != tt.a.perm || got.uid != tt.a.uid || got.gid != tt.a.gid || got.rdev != tt.a.rdev {
				t.Errorf("parsed back %+v, want %+v", got, tt.a)
			}
			if typ := specialType(md); (tt.typ == syscall.S_IFREG) != (typ == 0) || (typ != 0 && typ != tt.typ) {
				t.Errorf("specialType = %o for type %o", typ, tt.typ)
			}
		})
	}
}

func TestWithMetadata(t *testing.T) {
	t5 := time.Unix(5, 0)
	def := attrs{perm: 0o644, uid: 1, gid: 2, mtime: t5, atime: t5, ctime: t5}
	at := func(perm, uid, gid uint32, mtime, atime time.Time) attrs {
		return attrs{perm: perm, uid: uid, gid: gid, mtime: mtime, atime: atime, ctime: t5}
	}
	tests := []struct {
		name string
		md   store.Metadata
		want attrs
	}{
		{"none", nil, def},
		{"s3fs directory", store.Metadata{"mode": "16877"}, at(0o755, 1, 2, t5, t5)},
		{"bare permissions", store.Metadata{"mode": "384"}, at(0o600, 1, 2, t5, t5)},
		{"fractional mtime", store.Metadata{"mtime": "1700000000.5"}, at(0o644, 1, 2, time.Unix(1700000000, 500000000), time.Unix(1700000000, 500000000))},
		{"nanoseconds", store.Metadata{"mtime": "1700000000.000000007"}, at(0o644, 1, 2, time.Unix(1700000000, 7), time.Unix(1700000000, 7))},
		{"atime", store.Metadata{"mtime": "1700000000", "atime": "1600000000"}, at(0o644, 1, 2, time.Unix(1700000000, 0), time.Unix(1600000000, 0))},
		{"garbage ignored", store.Metadata{"mode": "rw-r--r--", "uid": "-1", "mtime": "yesterday", "atime": "1.x"}, def},
		{"owner", store.Metadata{"uid": "1000", "gid": "1001"}, at(0o644, 1000, 1001, t5, t5)},
		{"rdev", store.Metadata{"mode": "25008", "rdev": "2049"}, attrs{perm: 0o660, uid: 1, gid: 2, mtime: t5, atime: t5, ctime: t5, rdev: 2049}},
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

// TestCtimeKeepsNanoseconds: reading the object again (LastModified, whole
// seconds) keeps the ctime this mount set within that second, and takes a
// later one.
func TestCtimeKeepsNanoseconds(t *testing.T) {
	prev := attrs{ctime: time.Unix(1700000000, 700000000)}
	if got := (attrs{ctime: time.Unix(1700000000, 0)}).since(prev); !got.ctime.Equal(prev.ctime) {
		t.Errorf("same second: ctime %v, want %v", got.ctime, prev.ctime)
	}
	later := time.Unix(1700000001, 0)
	if got := (attrs{ctime: later}).since(prev); !got.ctime.Equal(later) {
		t.Errorf("later second: ctime %v, want %v", got.ctime, later)
	}
}
