// Package fs maps POSIX file operations onto an S3 bucket through go-fuse.
//
// The node tree has four node types: directories (a key prefix ending in
// "/", or the mount's prefix for the root), regular files (one object key),
// symbolic links (one object key holding the target) and special files:
// FIFOs, sockets and device nodes, each an empty object whose metadata says
// what it is (special.go). Hard links are refused with EPERM (see "Links").
//
// # Namespace
//
// A file is an object. A directory is either a marker object, "name/" with an
// empty body, which is what Mkdir writes and what keeps an empty directory
// alive, or an implicit directory: any common prefix of other keys. Lookup
// asks for the object "name" first (HeadObject); when it is missing, one
// listing of "name/" with a page size of one tells whether a directory of that
// name exists, and whether it has a marker whose metadata to read; a name
// found missing costs nothing more for NegativeTTL (the metadata cache,
// package meta, remembers both answers). A burst of lookups of
// new names in one directory, as cp -r, rsync or tar -x make before each
// create, costs one listing of that directory per NegativeTTL instead of
// a HEAD and a listing per name, when the directory fits in one page (see
// meta/burst.go). When both
// an object "name" and keys under "name/" exist, the file wins, in Lookup and
// in Readdir alike. Keys that cannot be file names (an empty segment as in
// "a//b", "." or "..", names longer than 255 bytes) are left out of listings.
//
// Readdir lists with the delimiter "/": every page, through the metadata cache
// (see "Consistency"), up to its limit of entries; a larger directory goes on
// a page at a time from there as the kernel asks for entries. Files created
// through this mount whose first upload has not finished yet are added at the
// end of the listing.
//
// READDIRPLUS (in the kernel's auto mode, see kernel.go) hands the kernel each
// entry with its attributes, so that ls -l does not send a LOOKUP per name.
// S3 listings carry no user metadata, and stat must report the stored mode,
// owner and mtime (rsync compares the mtime), so the attributes need a HEAD
// per object: the directory handle sends them for a chunk of entries at a
// time, 32 in parallel, and objects whose version the metadata cache has seen
// before need none. ls -l of n objects in a fresh mount thus costs
// ceil(n/1000) listing pages and n HEADs, 32 at a time (TestLsLongFewRequests);
// repeated within StatTTL it costs nothing, and after that the pages only.
//
// # Metadata
//
// Mode, owner and times live in user metadata under the names s3fs uses,
// so that buckets stay readable by both: "mode", "uid", "gid", "mtime",
// and "atime" when it differs from the mtime, "rdev" for device nodes
// (x-amz-meta-*). Objects without them get the mount's defaults and their
// LastModified time. The ctime is the object's LastModified, as every
// change partfs makes writes or copies the object; a directory's mtime and
// ctime also move when this mount adds or removes an entry in it (kept in
// memory: S3 has no directory object to store them in). atime changes only
// when set (utimensat), as with noatime. See attr.go for the exact formats.
//
// # Writing
//
// Each file inode has at most one writeback.File (its "state"), shared by
// every handle open on that inode, so two descriptors writing one file see one
// content. The state is created by Create, by an Open for writing or with
// O_TRUNC (which the kernel sends with OPEN: atomic O_TRUNC is negotiated),
// and by a truncate; it is dropped when the last handle is released. A
// truncate(2) by path is synced at once, as no close will follow it. Writes
// go to the state; reads of a file whose state holds changes are served by
// it, so an application reads its own writes.
//
// Every close(2) of a descriptor that can change the file (FLUSH) syncs the
// state: the data is durable in S3 when close returns success, and a failed
// upload is reported by close as an error. One exception: a truncating open
// of a stored object to which nothing has been written yet is left to
// RELEASE, because shells close a duplicate of the descriptor of
// `cmd > file` before cmd writes, and storing then would put an empty object
// in place of the old one while the new contents are still to come. fsync(2) does the same and the
// descriptor stays usable. RELEASE cannot report anything (the kernel ignores
// its result), so a state still dirty at release, which only happens when a
// FLUSH failed, is synced once more and a failure is logged. Root.SyncAll
// syncs every dirty state, for unmount.
//
// Unlinking a file drops its state: nothing of it reaches S3 afterwards, even
// when descriptors stay open on it (they keep working on a file that no longer
// has a name, as POSIX wants).
//
// # Metadata changes
//
// chmod, chown and utimes (SETATTR) change the user metadata. POSIX makes
// them durable at fsync, not when they return, and partfs uses that to send
// few requests. A file whose state is dirty gets them with its next upload
// (writeback.File.SetOptions, applied at completion). For a stored object
// they are pending (setAttrs, later.go): a rename of the file carries them
// on its copy; otherwise they are written, all changes since the last write
// together, by a metadata-replacing CopyObject of the object onto itself,
// pinned to its ETag (above Options.MaxCopySize, S3's 5 GiB, by a multipart
// copy onto itself), at the first of: fsync of the file, fsync of a
// directory above it, Root.SyncAll (unmount), a lookup after the kernel
// forgot the file, or Options.MetadataDelay (1 s) after the first change.
// chmod, utimes and rename in a row, as rsync does for every file, thus cost
// one copy, the rename's. This mount shows the changes at once; other
// clients see them once written. A crash may lose a pending change, never
// data; `rsync -a` sends such a file again. If the object changed meanwhile
// the copy is made once more on the new version. A directory gets its
// changes at once, by writing its marker again. Times are kept to the
// nanosecond, so a stat after a remount reports what a stat before it did
// and a second `rsync -a` finds nothing to transfer.
//
// # Fast close
//
// With Options.FastClose, close (FLUSH) returns once the file's bytes are
// held in the write buffer: the upload is queued (fastclose.go) and starts
// Options.UploadDelay (500 ms) later, with up to Options.PutConcurrency
// files in flight. Within that delay a rename moves the state to the new key
// without a request (writeback.File.Rekey: a new or truncated file with no
// part sent), a metadata change lands in the upload's metadata, and an
// unlink drops the state, so rsync's temporary file is uploaded once, under
// its final name. The state outlives the last RELEASE until its upload ends.
// Durability points: fsync of the file waits for its upload, fsync of a
// directory for every file below it, Root.SyncAll (unmount, SIGTERM) for
// all. A failed background upload is logged and counted
// (Root.UploadFailures), returned by the file's next close or fsync and by
// fsync of any directory above it, and listed by writeback.Writer.Unsaved
// (partfs status, the exit at unmount); a file that went out as one
// PutObject keeps its bytes (writeback KeepUnsent) and is tried again at the
// next sync. A crash loses the files closed but not yet uploaded; an object
// in S3 is always complete (a PutObject or a completed multipart upload).
//
// go-fuse negotiates FUSE_PARALLEL_DIROPS, so the kernel sends the LOOKUPs of
// one directory in parallel, and nothing in this package serializes them:
// Lookup takes no lock across its HEAD. All HEADs go through filesystem.stat
// and every change is announced through filesystem.changed, changedDir or
// stored (object.go).
//
// # Reading
//
// Every open handle of a file without changes reads one version of the
// object, the one found at open, through its own cache.Reader: blocks of the
// block cache keyed by (key, ETag, index), GETs pinned to the ETag, read-ahead
// for sequential readers. A read hands the cached blocks to the kernel
// without copying them (fuse.ReadResultVector). A file open for writing whose
// state holds no changes (writeback.File.Stored) reads its stored object the
// same way; one with changes reads through the state.
//
// When a read needs a block of a version that S3 no longer holds (another
// client replaced or deleted the object), the GET fails its precondition:
// that read fails with ESTALE, "stale file handle", which says what happened
// and what to do (open the file again), where EIO would read as a failing
// device. The file's metadata is dropped from the cache and asked for again,
// so that stat and the next open show what S3 holds now. The handle stays on
// its version: it goes on serving the blocks still cached and fails the
// others, and never returns bytes of another version.
//
// # Kernel caching
//
// The kernel keeps a file's pages across opens (FOPEN_KEEP_CACHE) while the
// version an open finds is the one whose bytes the page cache holds (the same
// ETag and size; a rename or a metadata change of this mount copies the bytes
// and keeps it). An open that finds a new version is answered without it, so
// the kernel drops the old pages. If descriptors of the old version are still
// open and reading through the page cache, the new one is opened with
// FOPEN_DIRECT_IO instead, around the page cache, until they are closed: the
// page cache never holds pages of two versions, which one read(2) could
// otherwise mix. (mmap with MAP_SHARED of such a descriptor fails with ENODEV
// meanwhile; reads, MAP_PRIVATE mappings and exec work.)
//
// Attributes and names are kept by the kernel for Options.AttrTimeout and
// EntryTimeout, missing names for NegativeTimeout (1 s each by default); READ
// requests are up to MountOptions.MaxRequest, 1 MiB by default, and the
// kernel's read-ahead (Options.KernelReadAhead, see kernel.go).
//
// # Consistency
//
// partfs gives close-to-open consistency, like NFS. Every open asks for the
// object again, through the metadata cache: what it finds is at most
// Options.StatTTL old (1 s by default), and all reads through that
// descriptor see that version or fail (see "Reading"). What this mount
// changes it sees at once: every change it makes in S3 (a completed upload,
// unlink, rename, mkdir, rmdir, symlink, chmod and the like) updates or drops
// the cached answers about that key and its directory listing as soon as S3
// has acted, and the kernel learns of it through the operation itself.
//
// A change by another client shows here as follows, counting from the moment
// S3 has it:
//
//   - a new object: in lookups and listings after at most StatTTL (the
//     listing cache; NegativeTTL when this mount looked the name up and
//     found nothing) plus NegativeTimeout, 2 s by default; at once when
//     this mount has not looked at the name or listed its directory within
//     that time;
//   - a replaced object: a new open reads the new version after at most
//     StatTTL; stat shows its size and times after at most StatTTL +
//     AttrTimeout (2 s by default), and a reader that opened within that
//     time may see the old size (the kernel's attributes) until then;
//     descriptors opened before keep reading the old version or get ESTALE;
//   - a deleted object: opens and stats fail after at most StatTTL +
//     EntryTimeout; descriptors open on it read what is cached and get
//     ESTALE for the rest;
//   - metadata (chmod, touch by another tool): after StatTTL + AttrTimeout.
//
// StatTTL, NegativeTTL and the kernel's timeouts are options (cmd/partfs
// flags); negative values turn each cache off.
//
// # Many hosts
//
// Several mounts of one bucket, on one host or many, never lose an update
// in silence. With Options.Conditional every write states the version it
// replaces (openStateLocked): a file opened on a stored object, with or
// without O_TRUNC, writes with If-Match the ETag this mount saw (at open,
// within StatTTL); a new name writes with If-None-Match: *; after each
// fsync the file requires the version it stored. PutObject,
// CreateMultipartUpload (where the server checks early, as MinIO does) and
// CompleteMultipartUpload carry the condition; mkdir, symlink and mknod
// carry If-None-Match and fail with EEXIST when another client made the
// name first. The read of untouched bytes of the base (an edit in place) is
// pinned to the same ETag.
//
// When another client stored a version first, S3 refuses the write (412)
// and close or fsync returns ESTALE. With writeback's ConflictKey (the
// default, --on-conflict copy) the losing changes are kept wherever every
// changed byte is still held: a file stored with one PutObject, or a
// multipart file refused before any part was sent (MinIO refuses at
// CreateMultipartUpload). They are stored next to the original as
// NAME.partfs-conflict-<UTC time>-<host> (ConflictKey), on top of the
// version S3 holds now: bytes the application did not write come from the
// winner's version, so an append race yields the loser's file exactly and
// an edit of other ranges holds both edits. A file whose parts were already
// sent and released (S3 refusing only at CompleteMultipartUpload) cannot be
// kept: the log says so, and close still returns ESTALE. Lost races are
// logged, counted and listed (writeback.Writer.Conflicts, partfs status).
// A 409 ConditionalRequestConflict (a race with an in-flight write) is
// retried, as S3 documents; it never ends in success without the
// condition.
//
// The delete of a renamed file's old name is pinned to the version copied
// (DeleteObject If-Match): another client's newer version stays. Where the
// server lacks conditional deletes, a HEAD just before the delete checks the
// version, leaving a window of one round trip (deleteVersion). A metadata
// change copies the object onto itself pinned to its ETag and is applied
// again to a newer version (chmod applies to whatever the name holds). A
// rename of a directory is not protected: it copies and deletes whatever
// each key holds.
//
// Without Options.Conditional (--on-conflict overwrite, or a server that
// refuses or ignores conditional writes, which cmd/partfs detects at mount
// with store.ProbeConditional and reports) the last close wins, as with
// other S3 mounts.
//
// What another host's change looks like here is in "Consistency" above:
// new opens see it after StatTTL; an open descriptor whose object was
// replaced gets ESTALE on its next read of a block not cached; listings
// show it after their TTL.
//
// # Rename
//
// S3 has no rename. A file or link is moved by CopyObject, pinned to the
// source's ETag, then DeleteObject of the source; objects above
// Options.MaxCopySize (S3's 5 GiB) by a multipart upload whose parts are
// UploadPartCopy ranges of the source sent in parallel. The metadata goes
// with the object (a multipart copy is given the source's metadata), and
// pending metadata changes of the file ride on the copy. The copy starts
// from the version this mount knows, without a HEAD: it is pinned, so a
// version another client wrote meanwhile fails it, and the rename then
// moves the version S3 holds now.
//
// rename returns once the copy exists: the new name holds the file. The
// delete of the old name runs in the background (later.go, up to 16 at a
// time). Until it has ended the old name reads as missing through this
// mount (stat, lookup, readdir), and anything about to be stored under it
// (create, symlink, mknod, a rename onto it) waits for the delete first,
// so that the delete never removes a newer file. fsync of a directory
// above it and Root.SyncAll wait for it and report a delete that failed
// (the old name then holds a second copy of the file; SyncAll tries again).
// A crash between the copy and the delete leaves the file under both names.
// partfs cleanup cannot tell such an object from a file the user wants
// (rsync's temporary names, .NAME.XXXXXX, are ordinary names), so it
// leaves them; rsync's next run with --delete removes them. A rename
// onto an existing file replaces it, and descriptors still open on the
// replaced file write to a nameless file, as after unlink. RENAME_NOREPLACE
// is honoured (EEXIST); RENAME_EXCHANGE and RENAME_WHITEOUT answer EINVAL.
//
// A file open for writing can be renamed (rsync, editors and many other
// programs write a temporary file and rename it): its state is first
// completed under the old name, as fsync would, then the object is copied,
// and the state is replaced by a fresh one on the new key whose base is the
// copy, so the descriptors go on writing where they were.
//
// A directory is moved object by object: every key under its prefix (all
// listing pages) is copied, a bounded number at a time, and only after every
// copy exists are the sources deleted. Files being written below it are
// completed first, and none of them is written while it moves. A directory
// rename is therefore not atomic: other clients, and this mount until the
// rename returns, can see both names, each partly filled. It never loses
// data: a failed copy stops the rename, the copies already made are deleted
// again and every source is untouched; a failed delete leaves an object at
// both names, and the rename reports the error. Files opened inside the
// directory while it moves may still be written under the old name. The
// target may be missing or an empty directory (else ENOTEMPTY).
//
// # Links
//
// Symbolic links are stored as s3fs stores them: an object whose body is the
// target and whose "mode" metadata has the type bits S_IFLNK (s3fs writes
// "41471", S_IFLNK|0777), with uid, gid and mtime; links written by either
// read in the other. Lookup tells a link by its metadata. Listings carry no
// metadata, so readdir reports an object as a regular file (DT_REG) unless
// the mount has already looked it up as a link or special file; lstat is
// always right.
//
// Hard links cannot be represented (an object has one key, and a copy would
// not share later writes): link(2) answers EPERM, logged once per mount.
//
// Extended attributes are disabled at the FUSE level (ENOSYS), on which the
// kernel answers EOPNOTSUPP (ENOTSUP) to getxattr, setxattr, listxattr and
// removexattr and stops asking. cp -a, rsync -a and ls treat ENOTSUP as "this
// file system has no extended attributes" and stay quiet (ENODATA from
// getxattr would be as quiet, but setxattr would then have to refuse anyway),
// and the kernel no longer sends a GETXATTR for security.capability before
// every write.
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
// read) and waits for write-buffer memory honour it and fail with EINTR. A
// HEAD or listing shared with other callers (meta.Cache) goes on for them;
// only the interrupted caller stops waiting.
// Requests that change the bucket (mkdir, mknod, rmdir, unlink, rename,
// symlink, setattr, and the syncs of close and fsync) run under a context detached
// from the request: an
// interrupt arriving after S3 acted could otherwise report failure for a
// change that happened, and a retried mkdir would then see EEXIST.
//
// # Timeouts
//
// Nothing here waits for S3 without bound: below this package every
// request is abandoned when no byte moves for the store's stall timeout,
// and every operation fails once its retry budget is spent (store.WithRetry),
// which reaches the application as EIO. Options.ReplyLimit additionally caps
// the waits of close and fsync, for kernels that abort a FUSE connection
// whose request stays unanswered too long: past it they return ETIMEDOUT
// and the changes stay for a later sync.
//
// # Locks
//
// Two suffixes say what a method expects of its caller. A name ending in
// Locked (startStateLocked, fillLocked) wants the receiver's mutex held: the
// fields marked "guarded by mu" of a node, or dirHandle.mu. A name ending
// in Held (syncHeld, releaseHeld) wants the file's operation lock,
// fileNode.op, held shared or exclusively, and takes fileNode.mu itself as
// needed; it may call the network.
//
// Lock order, outermost first:
//
//  1. go-fuse's own tree locks. This package never holds one of its mutexes
//     while calling into the go-fuse tree (NewInode, GetChild, Children),
//     except dirHandle.mu, which is held while reading the tree (GetChild,
//     Children: go-fuse takes its locks briefly and calls nothing back).
//     dirHandle.mu is a directory handle's own and is held across its
//     listing requests and READDIRPLUS HEADs; it is taken before any lock
//     below.
//  2. fileNode.op, an operation lock like writeback.File's opMu and like it
//     held across network calls: shared by every operation that creates,
//     uses or drops a file's state (open, read, write, truncate, sync,
//     release), exclusive for those that replace the state or move the
//     object (rename, a metadata change of a stored object). One operation
//     takes it once (a second shared lock deadlocks behind a waiting
//     rename); several files' op are taken in inode-number order
//     (lockFiles), as a directory rename locks every file below it.
//  3. fileNode.mu, symlinkNode.mu and dirNode.mu guard a node's fields,
//     among them its key or prefix, which rename changes. A fileNode.mu may
//     be held while calling the non-blocking methods of writeback.File (Key,
//     Size, Dirty, SetOptions) and Writer.Open, and never across WriteAt,
//     ReadAt, Truncate, Sync, Discard or any store call.
//  4. fileHandle.mu guards a handle's cache.Reader; it is taken with op held
//     or alone, never with fileNode.mu, and only cache.Reader's Open and
//     Close, which take the block cache's locks and never block on S3, are
//     called under it.
//  5. filesystem.mu guards the set of nodes that hold a state; it is taken
//     inside fileNode.mu and nothing is called while it is held.
//
// writeback.File, cache.Cache and meta.Cache have their own locks below all
// of these and never call back into this package.
package fs
