// Package diskreserve keeps the service's Pebble databases (the index, the embedded job and app
// stores) from filling their disk: a write is refused, with an error that says so, while the
// filesystem holding the database has less free space than a reserve.
//
// Why refuse early rather than handle the full disk: Pebble 2.1 cannot survive one. A commit
// whose WAL write fails with ENOSPC is a fatal error (the database must be reopened), and a WAL
// that cannot be rotated panics on a Pebble goroutine, which ends the process. So the builder and
// the stores stop writing while room is left for what Pebble itself must still write (a memtable
// flush, a compaction, a new WAL and MANIFEST when reopened), and go on by themselves once space
// returns. The reserve must cover what Pebble writes without asking: a new WAL, which it
// preallocates at 1.1× the memtable (the index's memtable is 64 MiB, so about 70 MiB), a
// memtable flush, a compaction. The default, 256 MiB, covers two WAL rotations and a flush of the
// index.
package diskreserve

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dustin/go-humanize"
)

// DefaultReserve is the free space below which writes are refused: 256 MiB.
const DefaultReserve int64 = 256 << 20

// ErrLowDisk matches every *Error (errors.Is).
var ErrLowDisk = errors.New("free disk space is below the reserve")

// Error is a write refused because the filesystem holding Dir had Avail bytes free, below the
// Reserve.
type Error struct {
	Dir     string
	Avail   uint64
	Reserve int64
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s free on its filesystem, below the reserve of %s: writes are refused until space returns",
		e.Dir, humanize.IBytes(e.Avail), humanize.IBytes(uint64(e.Reserve)))
}

// Is makes errors.Is(err, ErrLowDisk) true.
func (e *Error) Is(target error) bool { return target == ErrLowDisk }

// Check returns an *Error when the filesystem holding dir has less than reserve bytes free. A
// reserve of zero or less checks nothing. A filesystem that cannot tell its usage (an in-memory
// one) passes.
func Check(fs vfs.FS, dir string, reserve int64) error {
	if reserve <= 0 {
		return nil
	}
	du, err := fs.GetDiskUsage(dir)
	if err != nil {
		return nil
	}
	if du.AvailBytes < uint64(reserve) {
		return &Error{Dir: dir, Avail: du.AvailBytes, Reserve: reserve}
	}
	return nil
}

// Parse reads a reserve as an operator writes it: "256MiB", "1GB", "0" (no reserve).
func Parse(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (e.g. 256MiB, 1GiB, 0)", s)
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// Format writes a reserve as Parse reads it.
func Format(n int64) string { return humanize.IBytes(uint64(n)) }

// FreeFS is a vfs.FS whose GetDiskUsage reports Free bytes available (and the rest of the
// filesystem as used), for tests and drills of a filling disk; everything else is the wrapped
// FS's.
type FreeFS struct {
	vfs.FS
	Free atomic.Int64
}

// NewFreeFS wraps fs, reporting free bytes free.
func NewFreeFS(fs vfs.FS, free int64) *FreeFS {
	f := &FreeFS{FS: fs}
	f.Free.Store(free)
	return f
}

// GetDiskUsage reports f.Free available out of 1 TiB.
func (f *FreeFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	const total = 1 << 40
	free := uint64(max(f.Free.Load(), 0))
	return vfs.DiskUsage{AvailBytes: free, TotalBytes: total, UsedBytes: total - min(free, total)}, nil
}
