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
// Part n gets the size Plan.Size(n): the configured part size for the first
// parts, doubling every Plan.Step parts, capped by S3's 5 GiB and by half the
// write budget so one part always fits in memory. The step is chosen so that
// 10,000 parts reach S3's 50 TB object limit when the budget allows 5 GiB
// parts; with a smaller budget the largest file is Plan.MaxSize.
//
// # Memory
//
// Every part buffer is paid for from one Writer-wide budget before it is
// filled and paid back when its upload ends. A file's first buffer grows
// from 64 KiB to 1 MiB as it is written; beyond that each buffer is paid for
// as a whole part. When the budget is spent, writers wait (backpressure). A writer that has waited long while no upload
// is running is failed with ErrBufferExhausted instead of hanging: then every
// byte of the budget sits in partly filled buffers of files that are not being
// written, and only a larger budget or fewer open files can help.
//
// # Editing existing objects
//
// Appending to a stored object copies the object server-side into the new
// upload (UploadPartCopy, pinned to its ETag) and streams only the new bytes.
// Objects no larger than the first part are read into the buffer and edited in
// memory. Writes below the part already sent, or inside a larger stored
// object, return ErrUnsupported in this version.
//
// # Locks
//
// File.opMu serializes the operations on one file (write, read, truncate,
// sync) and is held while they wait for the budget or the network, as the
// file's bytes must not move under them; it is never taken by upload
// goroutines. upload.mu guards the results that those goroutines report and is
// never held across a call. Order: opMu before upload.mu.
package writeback
