package main

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"1048576", 1 << 20, false},
		{"0", 0, false},
		{"8MiB", 8 << 20, false},
		{"8mib", 8 << 20, false},
		{"512M", 512 << 20, false},
		{"512MB", 512 << 20, false},
		{"1G", 1 << 30, false},
		{"1GiB", 1 << 30, false},
		{"2T", 2 << 40, false},
		{"64k", 64 << 10, false},
		{"100B", 100, false},
		{" 5 MiB ", 5 << 20, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-5M", 0, true},
		{"1.5G", 0, true},
		{"8 parsecs", 0, true},
		{"9999999999T", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{8 << 20, "8MiB"},
		{512 << 20, "512MiB"},
		{1 << 30, "1GiB"},
		{1536, "1536"},
		{3 << 10, "3KiB"},
		{100, "100"},
		{0, "0"},
	}
	for _, tt := range tests {
		got := formatSize(tt.in)
		if got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := parseSize(got); err != nil || back != tt.in {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v", tt.in, back, err)
		}
	}
}
