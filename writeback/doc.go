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
// doubling every Plan.Step (64) parts up to S3's 5 GiB. With a base of at
// least 5 MiB at most 640 parts are smaller than 5 GiB, so 10,000 parts
// hold more than S3's 50 TB object limit: with the default 8 MiB base,
// Plan.MaxSize is 50,800,336,306,176 bytes (46.2 TiB).
//
// A part is buffered whole only up to a quarter of the write budget (and at
// least the part size); larger parts are staged (below). Without
// Options.StagePrefix nothing can be staged: every part is buffered whole,
// parts stop at half the budget so that one fits beside the one uploading,
// and files are smaller: with the default 512 MiB budget parts stop at
// 256 MiB and Plan.MaxSize is 2,615,098,212,352 bytes (2.4 TiB); a budget
// of 10 GiB allows 5 GiB parts.
//
// # Staged parts
//
// A staged part goes out while the application writes it, in pieces of the
// part size: each piece is hashed once and sent, through the same upload
// slots and budget as any part, as the next UploadPart of a temporary
// multipart upload of a stage key, StagePrefix followed by 16 random hex
// digits, ".part" and the part number (IsStageKey recognizes them). Runs of
// pieces that the base object holds unchanged are copied into it
// server-side instead. When the writer moves past the part, or at Sync, the
// last piece goes out; then, in the background, the temporary upload is
// completed, its object is copied in as the part with one UploadPartCopy
// pinned to its ETag, and it is deleted. A write into the current piece
// patches it in memory; a write, read or truncation that reaches bytes
// already sent, or a part already copied, checkpoints the file first (see
// Editing stored objects).
//
// A failure of any of these requests fails the file, as a failed part does:
// Sync returns it, and the file's upload and the temporary one are aborted,
// or the temporary object deleted. Only a failed delete after the copy
// leaves the file stored; it is logged at Warn with the key. A crash, or a
// failed abort or delete, leaves behind under StagePrefix temporary
// multipart uploads (a crash while pieces were being sent) and temporary
// objects (a crash between completing one and deleting it after its copy).
// A Writer keeps no record of them: the caller aborts and deletes them by
// age. The file's own upload is left under its key, as without staging.
//
// # Memory
//
// Every part buffer is paid for from one Writer-wide budget before it is
// filled and paid back when its upload ends. A file's first buffer grows
// from 64 KiB to 1 MiB as it is written; beyond that each buffer is paid for
// as a whole part, and a staged part holds one piece at a time (plus the
// pieces uploading), whatever its size. When the budget is spent, writers
// wait (backpressure). A writer that has waited long while no upload is running is failed with
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
// holds at most a quarter of the budget's parts open (open or staged),
// sending its least recently written one to open another. Editing a part
// already sent needs bytes no longer at hand: the file is first made
// durable, as by fsync, and edited further from there.
//
// # Locks
//
// File.opMu serializes the operations on one file (write, read, truncate,
// sync) and is held while they wait for the budget or the network, as the
// file's bytes must not move under them; it is never taken by upload
// goroutines. upload.mu guards the results that those goroutines report and is
// never held across a call. Order: opMu before upload.mu.
package writeback
