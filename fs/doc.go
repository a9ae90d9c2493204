// Package fs maps POSIX file operations onto an S3 bucket through go-fuse.
//
// The node tree has two node types: directories (a key prefix ending in "/",
// or the mount's prefix for the root) and regular files (one object key).
// Other file types, hard links and symbolic links do not exist in S3 and are
// refused by go-fuse with ENOTSUP. Rename is not implemented yet and answers
// EXDEV, on which mv(1) and most tools copy and delete instead.
//
// # Namespace
//
// A file is an object. A directory is either a marker object, "name/" with an
// empty body, which is what Mkdir writes and what keeps an empty directory
// alive, or an implicit directory: any common prefix of other keys. Lookup
// asks for the object "name" first (HeadObject); when it is missing, one
// listing of "name/" with a page size of one tells whether a directory of that
// name exists, and whether it has a marker whose metadata to read. When both
// an object "name" and keys under "name/" exist, the file wins, in Lookup and
// in Readdir alike. Keys that cannot be file names (an empty segment as in
// "a//b", "." or "..", names longer than 255 bytes) are left out of listings.
//
// Readdir lists with the delimiter "/" and follows every continuation token,
// fetching pages as the kernel asks for entries, so a directory of any size is
// listed without being held in memory twice. Files created through this mount
// whose first upload has not finished yet are added at the end of the listing.
// READDIRPLUS is disabled: S3 listings carry no user metadata, so they cannot
// report the mode and mtime that stat must show (rsync depends on the mtime).
//
// # Metadata
//
// Mode, owner and modification time live in user metadata under the names
// s3fs uses, so that buckets stay readable by both: "mode", "uid", "gid" and
// "mtime" (x-amz-meta-*). Objects without them get the mount's defaults and
// their LastModified time. See attr.go for the exact formats.
//
// # Writing
//
// Each file inode has at most one writeback.File (its "state"), shared by
// every handle open on that inode, so two descriptors writing one file see one
// content. The state is created by Create, by an Open for writing or with
// O_TRUNC (which the kernel sends with OPEN: atomic O_TRUNC is negotiated),
// and by a truncate; it is dropped when the last handle is released. A
// truncate(2) by path is synced at once, as no close will follow it. Writes go to the state; reads of a file
// with a state are served by it, so an application reads its own writes.
// Reads of other files go through the block cache with the object (key, ETag,
// size) found at open: each open asks S3 for the object again (close-to-open
// consistency), and the kernel keeps its page cache across opens only while
// the ETag is unchanged.
//
// Every close(2) of a descriptor that can change the file (FLUSH) syncs the
// state: the data is durable in S3 when close returns success, and a failed
// upload is reported by close as an error. fsync(2) does the same and the
// descriptor stays usable. RELEASE cannot report anything (the kernel ignores
// its result), so a state still dirty at release, which only happens when a
// FLUSH failed, is synced once more and a failure is logged. Root.SyncAll
// syncs every dirty state, for unmount.
//
// Unlinking a file drops its state: nothing of it reaches S3 afterwards, even
// when descriptors stay open on it (they keep working on a file that no longer
// has a name, as POSIX wants).
//
// Changes of mode, owner and times are kept in memory and, for a file with a
// state, written with its next upload.
//
// # Error handling
//
// Lower layers return wrapped errors with sentinels; errno.go holds the one
// translation to syscall.Errno, by errors.Is and errors.As only. An error it
// does not know becomes EIO and is logged once there, with the operation and
// the key; no other place logs errors it returns.
//
// # Interrupts
//
// go-fuse cancels the request's context when the kernel forwards an
// interrupt (any signal to the calling thread, including the SIGURG the Go
// runtime uses for preemption). Requests that only read (lookup, readdir,
// read) and waits for write-buffer memory honour it and fail with EINTR.
// Requests that change the bucket (mkdir, rmdir, unlink, and the syncs of
// close and fsync) run under a context detached from the request: an
// interrupt arriving after S3 acted could otherwise report failure for a
// change that happened, and a retried mkdir would then see EEXIST.
//
// # Locks
//
// Lock order, outermost first:
//
//  1. go-fuse's own tree locks. This package never holds one of its mutexes
//     while calling into the go-fuse tree (NewInode, GetChild, Children).
//  2. fileNode.mu and dirNode.mu guard a node's fields. A fileNode.mu may be
//     held while calling the non-blocking methods of writeback.File (Size,
//     Dirty, SetOptions) and never across WriteAt, ReadAt, Truncate, Sync,
//     Discard or any store call.
//  3. filesystem.mu guards the set of nodes that hold a state; it is taken
//     inside fileNode.mu and nothing is called while it is held.
//
// writeback.File has its own locks below all of these and never calls back
// into this package.
package fs
