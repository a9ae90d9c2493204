package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
)

// customerKeySize is the size of an SSE-C key: AES-256.
const customerKeySize = 32

// readCustomerKey reads the SSE-C key from path: exactly 32 bytes, or their
// base64 encoding (44 characters, surrounding white space allowed), as
// `openssl rand 32 > key` and `openssl rand -base64 32 > key` write them.
// Its errors describe the file's size and form, never its content.
func readCustomerKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sse-c-key-file: %w", err)
	}
	if len(b) == customerKeySize {
		return b, nil
	}
	text := bytes.TrimSpace(b)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	clear(b)
	if err == nil && n == customerKeySize {
		return key[:n], nil
	}
	clear(key)
	return nil, fmt.Errorf("--sse-c-key-file %s: want a 32-byte key, as 32 raw bytes or their base64 (44 characters); the file holds %d bytes that are neither", path, len(b))
}

// keyFileExposed reports whether others than the owner may read path.
func keyFileExposed(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o077 != 0
}
