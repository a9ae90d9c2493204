package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCustomerKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xA5, '\n', 0, 'k'}, 8) // raw bytes, white space included
	b64 := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"raw", key, true},
		{"base64", []byte(b64), true},
		{"base64 with newline", []byte(b64 + "\n"), true},
		{"base64 with spaces", []byte("  " + b64 + " \r\n"), true},
		{"too short", key[:31], false},
		{"too long", append(append([]byte{}, key...), 'x'), false},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(key[:16])), false},
		{"unpadded base64", []byte(base64.RawStdEncoding.EncodeToString(key)), false},
		{"hex", []byte(strings.Repeat("ab", 32)), false},
		{"empty", nil, false},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readCustomerKey(path)
			if tt.ok {
				if err != nil || !bytes.Equal(got, key) {
					t.Fatalf("readCustomerKey = %x, %v; want the key", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("readCustomerKey accepted %q", tt.content)
			}
			msg := err.Error()
			if !strings.Contains(msg, "32") || !strings.Contains(msg, path) {
				t.Errorf("message %q does not explain the expected form", msg)
			}
			// The message speaks of the file, never of what it holds.
			if len(tt.content) > 4 && strings.Contains(msg, string(tt.content[:len(tt.content)/2])) {
				t.Errorf("message %q shows the file's content", msg)
			}
		})
	}
	if _, err := readCustomerKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--sse-c-key-file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestKeyFileExposed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if keyFileExposed(path) {
		t.Error("0600 reported as exposed")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if !keyFileExposed(path) {
		t.Error("0644 not reported as exposed")
	}
}
