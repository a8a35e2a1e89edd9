package index

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/replay/replay/index/diskreserve"
	"github.com/replay/replay/index/indextest"
)

// TestPendingWrite: what a commit writes from pending is, per (bucket, webhook), the ascending
// distinct batch offsets added, the repeats of one batch dropped wherever they came (the
// decoders drop only those among a batch's last few entries), and each bucket's largest offset;
// over two commits, with the storage reused.
func TestPendingWrite(t *testing.T) {
	ix := openIndex(t, Options{Dir: t.TempDir()})
	rng := rand.New(rand.NewPCG(7, 8))
	var pd pending
	type key struct {
		bucket  uint32
		webhook uint64
	}
	want := map[key][]int64{}
	hi := map[uint32]int64{}
	offset := int64(0)
	for commit := range 2 {
		for range 300 { // batches
			offset += 1 + int64(rng.IntN(20))
			for range 1 + rng.IntN(30) { // records, repeats of a webhook far apart included
				k := key{uint32(100 + rng.IntN(4)), uint64(rng.IntN(12))}
				pd.add(k.bucket, k.webhook, offset)
				if w := want[k]; len(w) == 0 || w[len(w)-1] != offset {
					want[k] = append(w, offset)
				}
				hi[k.bucket] = max(hi[k.bucket], offset)
			}
		}
		b := ix.db.NewBatch()
		if _, err := pd.write(b, 3, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		pd.reset()
		for k, offs := range want {
			v, closer, err := ix.db.Get(entryKey(nil, 3, k.bucket, k.webhook))
			if err != nil {
				t.Fatalf("commit %d: %v: %v", commit, k, err)
			}
			got, err := decodeRuns(nil, v)
			closer.Close()
			if err != nil || !slices.Equal(got, offs) {
				t.Fatalf("commit %d: %v: %v (%v), want %v", commit, k, got, err, offs)
			}
		}
		for bucket, h := range hi {
			v, closer, err := ix.db.Get(summaryKey(nil, 3, bucket))
			if err != nil {
				t.Fatal(err)
			}
			got, n := binary.Uvarint(v)
			closer.Close()
			if n <= 0 || int64(got) != h {
				t.Fatalf("commit %d: bucket %d summary %d, want %d", commit, bucket, got, h)
			}
		}
	}
}

// TestBuildFailedCommitEndsBuild: a commit that fails (here refused by the disk reserve, the
// moment the previous one is reported) ends the build with nothing committed after it, whatever
// the builder aggregated meanwhile: the checkpoint is the last one reported, and a build resumed
// from it ends equal, entry by entry, to a rebuild from scratch.
func TestBuildFailedCommitEndsBuild(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, filepath.Join(dir, "log"), 1, nil)
	spec := baseSpec()
	if _, err := indextest.Generate(ctx, l, spec); err != nil {
		t.Fatal(err)
	}
	fs := diskreserve.NewFreeFS(vfs.Default, 1<<40)
	ix := openIndex(t, Options{Dir: filepath.Join(dir, "index"), CommitRecords: 300, FS: fs, DiskReserve: 1 << 20})
	var reported []int64
	err := ix.Build(ctx, l, BuildOptions{Progress: func(p Progress) {
		reported = append(reported, p.Checkpoint)
		if len(reported) == 3 {
			fs.Free.Store(0) // the next commit is refused
		}
	}})
	if !errors.Is(err, diskreserve.ErrLowDisk) || len(reported) != 3 {
		t.Fatalf("build: %v after %d commits reported", err, len(reported))
	}
	cp, _, err := ix.Checkpoint(0)
	if err != nil || cp != reported[2] {
		t.Fatalf("checkpoint %d (%v), the last reported %d", cp, err, reported[2])
	}
	end, err := l.Bounds(ctx, 0)
	if err != nil || cp >= end.End {
		t.Fatalf("checkpoint %d, log end %d (%v): the test does not stop the build early", cp, end.End, err)
	}
	fs.Free.Store(1 << 40)
	build(t, ix, l)
	sameAsRebuild(t, ix, l, filepath.Join(dir, "fresh"))
}
