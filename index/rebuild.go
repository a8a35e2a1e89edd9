package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/replay/replay/engine"
)

// RebuildOptions say what a rebuild reads and how it builds. DataDir and Source are required.
type RebuildOptions struct {
	// DataDir is the data directory whose live index is replaced.
	DataDir string
	// Source is the log the index is built from.
	Source engine.Source
	// Partitions, if set, are the only partitions read from the log; the others' keys are
	// copied from the live index before the switch. Default (nil): every partition is read.
	Partitions []int32
	// Parallelism is BuildOptions.Parallelism.
	Parallelism int
	// BucketWidth is the width of a new index; a resumed rebuild keeps its own (naming another
	// is an error). Default: DefaultBucketWidth for a new one.
	BucketWidth time.Duration
	// Retention is the new index's Options.Retention.
	Retention time.Duration
	// Progress is BuildOptions.Progress.
	Progress func(Progress)
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Rebuild is a rebuild of a data directory's index into DataDir/RebuildDir, resumable: Build
// fills it from the log (committing progress as it goes, so an interrupted rebuild resumes where
// it stopped when opened again), Finish copies the partitions not rebuilt from the live index,
// applies retention, compacts and switches the data directory to it. Close releases it; it is
// idempotent, and after Finish there is nothing left to release.
type Rebuild struct {
	o       RebuildOptions
	ix      *Index
	dir     string
	resumed bool
	parts   []int32
}

// RebuildReport says what Finish did.
type RebuildReport struct {
	// Live is the new live index directory.
	Live string
	// Imported is how many keys of the other partitions were copied from ImportedFrom.
	Imported     int
	ImportedFrom string
	// Stats are the new index's, after compaction.
	Stats Stats
}

// OpenRebuild opens (or resumes) the rebuild of o.DataDir's index. It fails when Partitions
// names a partition the source does not have.
func OpenRebuild(ctx context.Context, o RebuildOptions) (*Rebuild, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DataDir == "" || o.Source == nil {
		return nil, errors.New("index: a rebuild needs DataDir and Source")
	}
	n, err := o.Source.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	parts := o.Partitions
	for _, p := range parts {
		if p < 0 || p >= n {
			return nil, fmt.Errorf("index: topic %s has %d partitions, no partition %d", o.Source.Topic(), n, p)
		}
	}
	if parts == nil {
		for p := int32(0); p < n; p++ {
			parts = append(parts, p)
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, err
	}
	r := &Rebuild{o: o, dir: filepath.Join(o.DataDir, RebuildDir), parts: parts}
	_, statErr := os.Stat(r.dir)
	r.resumed = statErr == nil
	if r.ix, err = Open(Options{Dir: r.dir, BucketWidth: o.BucketWidth, Retention: o.Retention, Logger: o.Logger}); err != nil {
		return nil, err
	}
	return r, nil
}

// Dir is the directory being built.
func (r *Rebuild) Dir() string { return r.dir }

// Resumed says an earlier, interrupted rebuild is being continued.
func (r *Rebuild) Resumed() bool { return r.resumed }

// Partitions are the partitions Build reads from the log.
func (r *Rebuild) Partitions() []int32 { return r.parts }

// Build indexes the partitions from the log up to its end.
func (r *Rebuild) Build(ctx context.Context) error {
	return r.ix.Build(ctx, r.o.Source, BuildOptions{Partitions: r.parts, Parallelism: r.o.Parallelism, Progress: r.o.Progress})
}

// Finish completes a built rebuild: the partitions not rebuilt are copied from the live index,
// retention is applied, the index is compacted and closed, and Switch makes it the live one.
func (r *Rebuild) Finish(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	liveDir, _, err := LiveDir(r.o.DataDir)
	if err != nil {
		return rep, err
	}
	if r.o.Partitions != nil {
		if _, err := os.Stat(liveDir); err == nil {
			live, err := Open(Options{Dir: liveDir, ReadOnly: true, Logger: r.o.Logger})
			if err != nil {
				return rep, fmt.Errorf("copying the other partitions from the live index: %w", err)
			}
			rebuilt := slices.Sorted(slices.Values(r.o.Partitions))
			n, err := r.ix.ImportPartitions(live, func(p int32) bool { _, found := slices.BinarySearch(rebuilt, p); return !found })
			live.Close()
			if err != nil {
				return rep, fmt.Errorf("copying the other partitions from the live index: %w", err)
			}
			rep.Imported, rep.ImportedFrom = n, liveDir
		}
	}
	if _, err := r.ix.EnforceRetention(ctx, r.o.Source); err != nil {
		return rep, err
	}
	if err := r.ix.Compact(ctx); err != nil {
		return rep, err
	}
	if rep.Stats, err = r.ix.Stats(); err != nil {
		return rep, err
	}
	if err := r.Close(); err != nil {
		return rep, err
	}
	rep.Live, err = Switch(r.o.DataDir)
	return rep, err
}

// Close closes the index being built; a later OpenRebuild resumes it. It is idempotent.
func (r *Rebuild) Close() error {
	if r.ix == nil {
		return nil
	}
	err := r.ix.Close()
	r.ix = nil
	return err
}

// RebuildIndex runs a whole rebuild: OpenRebuild, Build, Finish.
func RebuildIndex(ctx context.Context, o RebuildOptions) (RebuildReport, error) {
	r, err := OpenRebuild(ctx, o)
	if err != nil {
		return RebuildReport{}, err
	}
	defer r.Close()
	if err := r.Build(ctx); err != nil {
		return RebuildReport{}, err
	}
	return r.Finish(ctx)
}
