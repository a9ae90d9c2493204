//go:build !linux

package fs

import "errors"

// setReadAhead is Linux's sysfs setting; elsewhere the kernel's default
// stays.
func setReadAhead(dir string, n int64) error {
	return errors.New("fs: setting the kernel's read-ahead is only possible on Linux")
}
