package fs

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

// TestStageDirHidden: the stage folder at the root of a mount is neither
// listed nor found, and nothing can be made under its name; the name is
// free anywhere else.
func TestStageDirHidden(t *testing.T) {
	for _, prefix := range []string{"", "mounted/"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			m := newMount(t, nil, func(o *Options) { o.Prefix = prefix })
			staged := StagePrefix(prefix) + "0123456789abcdef.part129"
			m.put(t, staged, []byte("staged bytes"), nil)
			m.put(t, prefix+"visible", []byte("v"), nil)

			entries, err := os.ReadDir(m.path("."))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "visible" {
				t.Errorf("root lists %v, want only visible", entries)
			}
			if _, err := os.Stat(m.path(StageDir)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("stat of the stage folder: %v, want ENOENT", err)
			}
			for name, op := range map[string]func() error{
				"mkdir":  func() error { return os.Mkdir(m.path(StageDir), 0o755) },
				"create": func() error { return os.WriteFile(m.path(StageDir), []byte("x"), 0o644) },
				"rename": func() error { return os.Rename(m.path("visible"), m.path(StageDir)) },
			} {
				if err := op(); !errors.Is(err, syscall.EPERM) {
					t.Errorf("%s of the stage folder: %v, want EPERM", name, err)
				}
			}
			// What must find it first finds nothing.
			if err := syscall.Rmdir(m.path(StageDir)); !errors.Is(err, syscall.ENOENT) {
				t.Errorf("rmdir of the stage folder: %v, want ENOENT", err)
			}
			if obj, err := m.st.Stat(t.Context(), staged); err != nil || obj.Size != 12 {
				t.Errorf("the staged object after all that: %+v, %v", obj, err)
			}
			// Below the root the name is an ordinary one.
			if err := os.MkdirAll(m.path("sub/"+StageDir), 0o755); err != nil {
				t.Errorf("mkdir sub/%s: %v", StageDir, err)
			}
		})
	}
}
