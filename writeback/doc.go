// Package writeback holds the dirty state of files being written and the
// engine that streams them to S3.
//
// # Data flow
//
// A File starts from a base (the object it was opened on, or nothing after
// O_TRUNC or create). Writes fill a part buffer; when a write lands past the
// end of a full buffer, the buffer is sealed and sent as the next numbered
// UploadPart, hashed once (its MD5 goes out as Content-MD5), while the
// application keeps writing. The multipart upload is created when the first
// part seals, so a file that never fills one part is a single PutObject.
// Sync (close, fsync) sends the last part, waits for every part and completes
// the upload; any failure aborts the upload and is returned from Sync.
//
// # Part sizes
//
// Part n always covers the same bytes of the file, [Plan.Start(n),
// Plan.Start(n+1)), so an edit anywhere maps to one part number. Part n
// gets the size Plan.Size(n): the configured part size for the first parts,
// doubling every Plan.Step parts, capped by S3's 5 GiB and by half the write
// budget so one part always fits in memory. The step is chosen so that
// 10,000 parts reach S3's 50 TB object limit when the budget allows 5 GiB
// parts; with a smaller budget the largest file is Plan.MaxSize.
//
// # Memory
//
// Every part buffer is paid for from one Writer-wide budget before it is
// filled and paid back when its upload ends. A file's first buffer grows
// from 64 KiB to 1 MiB as it is written; beyond that each buffer is paid for
// as a whole part. When the budget is spent, writers wait (backpressure).
// A writer that has waited long while no upload is running is failed with
// ErrBufferExhausted instead of hanging: then every byte of the budget sits
// in partly filled buffers of files that are not being written, and only a
// larger budget or fewer open files can help.
//
// # Editing stored objects
//
// Opening a stored object without O_TRUNC costs nothing until it changes.
// Then each part is open (its buffer is being edited), sent, or untouched.
// At Sync, untouched parts are copied server-side (UploadPartCopy pinned to
// the ETag); open parts get the bytes not written from the object with one
// ranged GET of at most a part, and are sent. Appending 1 MiB to a 10 GiB
// object thus reads at most one part and copies the rest within S3. A
// sequential writer's parts are sent as soon as it moves past them; a file
// holds at most a quarter of the budget's parts open, sending its least
// recently written one to open another. Editing a part already sent needs
// bytes no longer at hand: the file is first made durable, as by fsync, and
// edited further from there.
//
// # Locks
//
// File.opMu serializes the operations on one file (write, read, truncate,
// sync) and is held while they wait for the budget or the network, as the
// file's bytes must not move under them; it is never taken by upload
// goroutines. upload.mu guards the results that those goroutines report and is
// never held across a call. Order: opMu before upload.mu.
package writeback
