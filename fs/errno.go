package fs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/writeback"
)

// errnoTable lists the errors that have a meaning of their own for
// applications, in the order they are tested. Anything else is EIO.
var errnoTable = []struct {
	err   error
	errno syscall.Errno
}{
	{context.Canceled, syscall.EINTR},
	{context.DeadlineExceeded, syscall.ETIMEDOUT},
	{fs.ErrNotExist, syscall.ENOENT}, // store.ErrNotExist satisfies it
	{store.ErrAccessDenied, syscall.EACCES},
	{store.ErrTooLarge, syscall.EFBIG},
	{store.ErrKeyTooLong, syscall.ENAMETOOLONG},
	{store.ErrPrecondition, syscall.ESTALE},
	{writeback.ErrBufferExhausted, syscall.ENOSPC},
}

// toErrno is the one translation of errors to errno values. Errors it does
// not know become EIO and are logged here, once, with the operation and the
// key, since the application only ever sees "input/output error".
func (fsys *filesystem) toErrno(op, key string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, e := range errnoTable {
		if errors.Is(err, e.err) {
			return e.errno
		}
	}
	fsys.log.Error("I/O error", "op", op, "key", key, "err", err)
	return syscall.EIO
}
