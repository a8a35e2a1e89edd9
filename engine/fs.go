package engine

import (
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is the engine's filesystem seam: pebble's vfs.FS, which tests wrap (vfs/errorfs) to inject
// write and sync failures, plus the truncation that recovery needs and vfs.FS does not offer.
type FS interface {
	vfs.FS
	// Truncate cuts the named file to size bytes.
	Truncate(name string, size int64) error
}

// DefaultFS is the operating system's filesystem.
var DefaultFS FS = WithTruncate(vfs.Default, os.Truncate)

// WithTruncate makes an FS of fs and a truncate function, typically os.Truncate beneath a
// fault-injecting wrapper of vfs.Default.
func WithTruncate(fs vfs.FS, truncate func(name string, size int64) error) FS {
	return truncatingFS{FS: fs, truncate: truncate}
}

type truncatingFS struct {
	vfs.FS
	truncate func(string, int64) error
}

func (t truncatingFS) Truncate(name string, size int64) error { return t.truncate(name, size) }

var errNotExist = os.ErrNotExist
