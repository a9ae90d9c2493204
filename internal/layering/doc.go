// Package layering has no code: its test keeps the imports of partfs
// pointing one way, cmd → fs → writeback, cache, meta → store, and keeps each
// outside library in the one package that wraps it. See layering_test.go
// for the table of layers; a new package is placed in it before its first
// test run passes.
package layering
