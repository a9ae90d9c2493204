// Package integration holds partfs's end-to-end tests: they build the partfs
// binary, start a real MinIO server, mount buckets through the kernel's FUSE
// driver with partfs running as a child process behind a recording,
// fault-injecting proxy (internal/s3proxy), and check the stored objects
// with a separate S3 client.
//
// The tests need root (or fuse3's fusermount3), /dev/fuse and the MinIO
// binary that `make test` installs into .bin/; without them they fail with a
// hint rather than skip. Run them with `make test` or
//
//	go test -race ./integration/
package integration
