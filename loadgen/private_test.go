//go:build unix

package main

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// What produce writes into a data directory (the embedded log, the manifest) is its user's
// alone whatever the umask loadgen starts with, as for replayd, which shares the directory.
func TestProduceFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	root := newRootCommand()
	root.SetArgs([]string{"produce", "--data", filepath.Join(dir, "data"), "--events", "200", "--span", "1h",
		"--manifest", filepath.Join(dir, "run.manifest")})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s is %v, want %v", path, info.Mode().Perm(), want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("only %d files and directories written", n)
	}
}
