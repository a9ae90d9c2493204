package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes parseSize accepts, lower-cased. All of them are
// powers of 1024, with or without "i" and "B": "512M", "512MB" and "512MiB"
// are the same size. People write all three for the same intent, and a part
// size is a buffer size, where binary units are what they mean.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSize parses a byte count such as "8MiB", "512M", "1G" or "1048576".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	digits := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(s)
	}
	if digits == 0 {
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit (K, M, G, T), e.g. 8MiB", s)
	}
	if digits < len(s) && (s[digits] == '.' || s[digits] == ',') {
		return 0, fmt.Errorf("invalid size %q: want a whole number; use a smaller unit, e.g. 1536MiB for 1.5GiB", s)
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(s[digits:]))]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, K, M, G or T, e.g. 8MiB)", s, s[digits:])
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * unit, nil
}

// formatSize writes a size the way parseSize reads it, in the largest unit
// that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeFlag is a flag.Value holding a size.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return ""
	}
	return formatSize(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "invalid size "+strconv.Quote(s)+": "))
	}
	*f.n = n
	return nil
}

// octalFlag is a flag.Value holding permission bits written in octal.
type octalFlag struct{ n *uint32 }

func (f octalFlag) String() string {
	if f.n == nil {
		return ""
	}
	return fmt.Sprintf("%04o", *f.n)
}

func (f octalFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return errors.New("want octal permission bits such as 0644")
	}
	*f.n = uint32(v)
	return nil
}

// idFlag is a flag.Value holding a user or group ID.
type idFlag struct{ n *uint32 }

func (f idFlag) String() string {
	if f.n == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*f.n), 10)
}

func (f idFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return errors.New("want a numeric ID")
	}
	*f.n = uint32(v)
	return nil
}
