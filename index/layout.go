package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/replay/replay/engine"
)

// The index's place in a data directory. The live index is the directory that the pointer file
// DIR/INDEX names (one line, a directory name inside DIR); with no pointer file it is DIR/index.
// A rebuild fills DIR/index.rebuild, then Switch renames it to a fresh DIR/index-<time> and
// replaces the pointer atomically (temporary file, fsync, rename, fsync of DIR), so a reader
// resolving the pointer sees the old index or the new one, whole, never a half-built one.
const (
	PointerFile  = "INDEX"
	DefaultDir   = "index"
	RebuildDir   = "index.rebuild"
	switchPrefix = "index-"
)

// LiveDir is the path of the live index under dataDir, and whether a pointer file names it.
func LiveDir(dataDir string) (string, bool, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, PointerFile))
	if errors.Is(err, os.ErrNotExist) {
		return filepath.Join(dataDir, DefaultDir), false, nil
	}
	if err != nil {
		return "", false, err
	}
	name := strings.TrimSpace(string(b))
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return "", false, fmt.Errorf("%w: %s names %q, not a directory of %s", ErrCorrupt, PointerFile, name, dataDir)
	}
	return filepath.Join(dataDir, name), true, nil
}

// Switch makes the closed index in dataDir/RebuildDir the live one: it is renamed to
// dataDir/index-<time>, the pointer file is replaced atomically to name it, and then the
// previous live index and any index-* directory left by an interrupted switch are removed,
// unless a process has one open (a running server, which removes it itself once it has followed
// the switch: removing files under an open Pebble would fail its next flush or WAL rotation, and
// Pebble 2.1 panics on the latter). It returns the new live directory.
func Switch(dataDir string) (string, error) {
	if _, _, err := LiveDir(dataDir); err != nil {
		return "", err
	}
	name := switchPrefix + time.Now().UTC().Format("20060102T150405.000000000")
	live := filepath.Join(dataDir, name)
	if err := os.Rename(filepath.Join(dataDir, RebuildDir), live); err != nil {
		return "", err
	}
	if err := engine.SyncDir(vfs.Default, dataDir); err != nil {
		return "", err
	}
	if err := engine.WriteFileAtomic(vfs.Default, filepath.Join(dataDir, PointerFile), []byte(name+"\n")); err != nil {
		return "", err
	}
	// The switch is done; what follows only frees space.
	if err := removeUnused(dataDir); err != nil {
		return live, fmt.Errorf("index: switched to %s, but removing the old index failed: %w", live, err)
	}
	return live, nil
}

// removeUnused removes the index directories of dataDir that are not the live one (the default
// directory and index-* ones) and that no process has open.
func removeUnused(dataDir string) error {
	live, _, err := LiveDir(dataDir)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		dir := filepath.Join(dataDir, e.Name())
		if !e.IsDir() || dir == live || (e.Name() != DefaultDir && !strings.HasPrefix(e.Name(), switchPrefix)) {
			continue
		}
		errs = append(errs, removeIfUnused(dir))
	}
	return errors.Join(errs...)
}

// removeIfUnused removes an index directory unless a process holds its Pebble lock (has it
// open); it holds the lock itself while removing, so that nobody opens it meanwhile.
func removeIfUnused(dir string) error {
	lock, err := vfs.Default.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil // open in some process (or already gone): its holder removes it
	}
	defer lock.Close()
	return os.RemoveAll(dir)
}
