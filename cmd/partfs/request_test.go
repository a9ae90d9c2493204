package main

import (
	"os"
	"testing"
)

// limitFile is a readFile serving fs.fuse.max_pages_limit as s; "" is a
// kernel without the setting.
func limitFile(s string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if name != maxPagesFile || s == "" {
			return nil, os.ErrNotExist
		}
		return []byte(s), nil
	}
}

func TestRequestSize(t *testing.T) {
	tests := []struct {
		name        string
		want        int64
		limit       string
		size, bound int64
	}{
		{"default", 1 << 20, "256\n", 1 << 20, 1 << 20},
		{"kernel without the setting", 8 << 20, "", 1 << 20, 1 << 20},
		{"raised kernel", 8 << 20, "2048\n", 8 << 20, 8 << 20},
		{"kernel raised beyond", 8 << 20, "16384\n", 8 << 20, 64 << 20},
		{"asked within", 4 << 20, "2048", 4 << 20, 8 << 20},
		{"asked beyond", 16 << 20, "2048", 8 << 20, 8 << 20},
		{"asked unaligned", 1<<20 + 100, "2048", 1 << 20, 8 << 20},
		{"asked tiny", 100, "256", 4 << 10, 1 << 20},
		{"unreadable limit", 8 << 20, "lots", 1 << 20, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, bound := requestSize(tt.want, limitFile(tt.limit))
			if size != tt.size || bound != tt.bound {
				t.Errorf("requestSize(%d) with limit %q = %d, %d; want %d, %d", tt.want, tt.limit, size, bound, tt.size, tt.bound)
			}
		})
	}
}
