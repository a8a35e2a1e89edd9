package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
)

func newIndexCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "index",
		Short: "Rebuild, verify and inspect the time-and-webhook index",
		Long: `The index maps (webhook, time bucket) to the offsets of the delivery_log record batches
holding that webhook's events, so a replay reads only those batches. It lives under the data
directory: DATA/INDEX names the live index directory (DATA/index when there is no INDEX file).`,
	}
	cmd.AddCommand(newIndexRebuildCommand(), newIndexVerifyCommand(), newIndexStatsCommand())
	return cmd
}

// addPartitionListFlag registers --only-partitions LIST (and its old name --partitions, which
// everywhere else is a partition count).
func addPartitionListFlag(cmd *cobra.Command, v *string, usage string) {
	cmd.Flags().StringVar(v, "only-partitions", "", usage)
	cmd.Flags().StringVar(v, "partitions", "", "")
	cmd.Flags().MarkDeprecated("partitions", "use --only-partitions (--partitions is a partition count in serve and loadgen produce)")
}

// parsePartitions parses "0,3-5" into ascending distinct partitions.
func parsePartitions(s string) ([]int32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int32
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 32)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("--only-partitions: %q is not a partition or a range a-b", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("--only-partitions: %q is not a range a-b with a ≤ b", part)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, int32(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkPartitions fails when parts names a partition src does not have.
func checkPartitions(ctx context.Context, src engine.Source, parts []int32) error {
	n, err := src.Partitions(ctx)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p >= n {
			return fmt.Errorf("--only-partitions: topic %s has %d partitions, no partition %d", src.Topic(), n, p)
		}
	}
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newIndexRebuildCommand() *cobra.Command {
	var (
		sf          sourceFlags
		partitions  string
		parallel    int
		bucketWidth time.Duration
		retention   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Build the index from the log into a fresh database and switch to it atomically",
		Long: `Build the index from the delivery_log into a fresh database, DATA/` + index.RebuildDir + `/, partitions in
parallel (at most --parallel at once), then make it the live index atomically: it is renamed to
DATA/index-<time>/ and the pointer file DATA/INDEX is replaced (temporary file, fsync, rename) to
name it; the previous live index is removed afterwards. A reader that resolves DATA/INDEX sees the
old index or the new one, never half of one. A running 'replayd serve' keeps the index it has
open until it reopens it.

The build commits every partition's progress with its entries, so an interrupted rebuild
(Ctrl-C, a crash) resumes where it stopped when run again with the same --data; delete
DATA/` + index.RebuildDir + `/ to start over.

With --only-partitions, only those partitions are read from the log; the others' entries are copied
from the live index into the new one before the switch.

On a terminal, stderr shows a progress bar per partition (records/s, bytes, ETA); otherwise only
the final summary is printed (on stdout).

` + sourceFlagsHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			parts, err := parsePartitions(partitions)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("bucket-width") {
				bucketWidth = 0 // a new index gets the default, a resumed one keeps its own
			}
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			return runIndexRebuild(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), &sf, parts, parallel, bucketWidth, retention)
		},
	}
	addSourceFlags(cmd.Flags(), &sf)
	addPartitionListFlag(cmd, &partitions, "partitions to rebuild, e.g. 0,3-5 (default all)")
	cmd.Flags().IntVar(&parallel, "parallel", 0, "partitions built at once (default the number of CPUs)")
	cmd.Flags().DurationVar(&bucketWidth, "bucket-width", index.DefaultBucketWidth, "time bucket width of a new index; a resumed rebuild keeps the width it was started with, and naming another is an error")
	cmd.Flags().DurationVar(&retention, "retention", index.DefaultRetention, "drop buckets older than this; negative keeps everything")
	return cmd
}

func runIndexRebuild(ctx context.Context, stdout, stderr io.Writer, sf *sourceFlags, parts []int32, parallel int, width, retention time.Duration) error {
	src, err := openSource(ctx, sf)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := checkPartitions(ctx, src, parts); err != nil {
		return err
	}
	ui := newBuildUI(stderr, isTerminal(os.Stderr) && stderr == io.Writer(os.Stderr))
	r, err := index.OpenRebuild(ctx, index.RebuildOptions{
		DataDir: sf.data, Source: src, Partitions: parts, Parallelism: parallel,
		BucketWidth: width, Retention: retention, Progress: ui.progress,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer r.Close()
	if r.Resumed() {
		fmt.Fprintf(stderr, "resuming the rebuild in %s\n", r.Dir())
	}
	ui.start(r.Partitions())
	start := time.Now()
	err = r.Build(ctx)
	ui.finish(err == nil)
	ui.summary(stdout, time.Since(start))
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "replayd: index rebuild interrupted; its progress is kept in %s: run it again to resume\n", r.Dir())
			return exitError{code: 130}
		}
		return err
	}
	rep, err := r.Finish(ctx)
	if rep.ImportedFrom != "" {
		fmt.Fprintf(stdout, "copied %d keys of the other partitions from %s\n", rep.Imported, rep.ImportedFrom)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "live index is now %s: %d entries, %d offsets, %s on disk\n", rep.Live, rep.Stats.Entries, rep.Stats.Offsets, humanBytes(float64(rep.Stats.DiskBytes)))
	return nil
}

// buildUI shows a rebuild's progress: a bar per partition on a terminal, a summary at the end.
type buildUI struct {
	out   io.Writer
	bars  bool
	pb    *mpb.Progress
	mu    sync.Mutex
	parts map[int32]*partUI
	order []int32
	began time.Time
}

type partUI struct {
	bar  *mpb.Bar
	last index.Progress
	seen bool
}

func newBuildUI(out io.Writer, bars bool) *buildUI {
	return &buildUI{out: out, bars: bars, parts: map[int32]*partUI{}}
}

func (u *buildUI) start(parts []int32) {
	u.began = time.Now()
	u.order = parts
	if u.bars {
		u.pb = mpb.New(mpb.WithOutput(u.out), mpb.WithWidth(30), mpb.WithRefreshRate(200*time.Millisecond))
	}
	for _, p := range parts {
		pu := &partUI{}
		u.parts[p] = pu
		if u.bars {
			pu.bar = u.pb.AddBar(0,
				mpb.PrependDecorators(decor.Name(fmt.Sprintf("partition %-3d", p)), decor.Percentage(decor.WCSyncSpace)),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return u.line(p) })),
			)
		}
	}
}

// line is a partition's rate, bytes and ETA.
func (u *buildUI) line(p int32) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	pu := u.parts[p]
	if !pu.seen {
		return "waiting"
	}
	pr := pu.last
	secs := max(time.Since(u.began).Seconds(), 1e-3)
	rate := float64(pr.Records) / secs
	done := pr.Checkpoint - pr.From
	left := pr.End - pr.Checkpoint
	eta := "-"
	if pr.CaughtUp {
		eta = "done"
	} else if done > 0 {
		eta = (time.Duration(float64(left) / (float64(done) / secs) * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%s ev/s  %s  ETA %s", humanCount(rate), humanBytes(float64(pr.Bytes)), eta)
}

func (u *buildUI) progress(pr index.Progress) {
	u.mu.Lock()
	pu := u.parts[pr.Partition]
	pu.last, pu.seen = pr, true
	u.mu.Unlock()
	if pu.bar != nil {
		total := pr.End - pr.From
		pu.bar.SetTotal(max(total, 1), false)
		pu.bar.SetCurrent(pr.Checkpoint - pr.From)
		if pr.CaughtUp {
			pu.bar.SetTotal(-1, true)
		}
	}
}

func (u *buildUI) finish(ok bool) {
	if u.pb == nil {
		return
	}
	for _, pu := range u.parts {
		if !pu.bar.Completed() {
			pu.bar.Abort(false)
		}
	}
	u.pb.Wait()
}

func (u *buildUI) summary(w io.Writer, elapsed time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partition\tfrom\tindexed to\tlog end\trecords\tbytes\t")
	var recs, bytes int64
	for _, p := range u.order {
		pr := u.parts[p].last
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%s\t\n", p, pr.From, pr.Checkpoint, pr.End, pr.Records, humanBytes(float64(pr.Bytes)))
		recs += pr.Records
		bytes += pr.Bytes
	}
	tw.Flush()
	secs := max(elapsed.Seconds(), 1e-3)
	fmt.Fprintf(w, "indexed %d records (%s) in %v: %s records/s, %s/s\n", recs, humanBytes(float64(bytes)), elapsed.Round(time.Millisecond), humanCount(float64(recs)/secs), humanBytes(float64(bytes)/secs))
}

func humanCount(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func humanBytes(x float64) string {
	switch {
	case x >= 1<<30:
		return fmt.Sprintf("%.2f GiB", x/(1<<30))
	case x >= 1<<20:
		return fmt.Sprintf("%.1f MiB", x/(1<<20))
	case x >= 1<<10:
		return fmt.Sprintf("%.1f KiB", x/(1<<10))
	}
	return fmt.Sprintf("%.0f B", x)
}

// openLiveIndex opens the live index under data for reading.
func openLiveIndex(data string) (*index.Index, string, error) {
	dir, _, err := index.LiveDir(data)
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, dir, fmt.Errorf("no index at %s (run 'replayd index rebuild'): %w", dir, err)
	}
	ix, err := index.Open(index.Options{Dir: dir, ReadOnly: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return ix, dir, err
}

func newIndexVerifyCommand() *cobra.Command {
	var (
		sf         sourceFlags
		partitions string
		maxPrint   int
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the live index against the log; exit 1 on any mismatch",
		Long: `Check the live index's own invariants, then scan the log of every partition (or of
--only-partitions) up to the partition's index checkpoint and check that every (webhook, time bucket,
batch) of the log is indexed ("missing" otherwise), that every offset an entry lists is a batch of
the log ("dangling" otherwise, also for offsets at or past the checkpoint), and that the batch
holds a record of that webhook in that bucket ("extra" otherwise). Offsets below the log start are
counted as expired, not mismatches: retention drops them. Buckets below the retention floor are
not compared. The log past the checkpoint is not indexed yet and is not checked: 'index stats'
shows that lag.

Mismatches are printed on stdout, one per line (at most --limit), then a summary; the exit
status is 1 if there was any. The index must not be open in a running 'replayd serve' (Pebble
locks it); its memory use is proportional to one partition's entries.

` + sourceFlagsHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			parts, err := parsePartitions(partitions)
			if err != nil {
				return err
			}
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			out := cmd.OutOrStdout()
			ix, dir, err := openLiveIndex(sf.data)
			if err != nil {
				return err
			}
			defer ix.Close()
			src, err := openSource(ctx, &sf)
			if err != nil {
				return err
			}
			defer src.Close()
			if err := checkPartitions(ctx, src, parts); err != nil {
				return err
			}
			if err := ix.Check(); err != nil {
				fmt.Fprintf(out, "index %s fails its own check: %v\n", dir, err)
				return exitError{code: 1}
			}
			printed := 0
			rep, err := ix.Verify(ctx, src, parts, func(m index.Mismatch) {
				if printed < maxPrint {
					fmt.Fprintln(out, m)
				}
				printed++
			})
			if err != nil {
				return err
			}
			if printed > maxPrint {
				fmt.Fprintf(out, "... and %d more\n", printed-maxPrint)
			}
			fmt.Fprintf(out, "verified %s: %d batches, %d records, %d (webhook, bucket, batch) pairs, %d entries; %d mismatches, %d expired offsets\n",
				dir, rep.Batches, rep.Records, rep.Pairs, rep.Entries, rep.Mismatches, rep.Expired)
			if rep.Mismatches > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	addSourceFlags(cmd.Flags(), &sf)
	addPartitionListFlag(cmd, &partitions, "partitions to verify, e.g. 0,3-5 (default all)")
	cmd.Flags().IntVar(&maxPrint, "limit", 1000, "print at most this many mismatches")
	cmd.Flags().IntVar(&maxPrint, "max-print", 1000, "")
	cmd.Flags().MarkDeprecated("max-print", "use --limit")
	return cmd
}

func newIndexStatsCommand() *cobra.Command {
	var sf sourceFlags
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the live index's size, entries, checkpoints and lag per (topic-)partition",
		Long: `Print the live index's directory, size on disk, entry and offset counts, and per partition
its checkpoint (the next offset to index), the log's start and end offsets, the lag (offsets of
the log not indexed yet, which lookups scan), entries, time buckets and the oldest and newest
bucket. With --topics, each row also names its topic and the topic's partition, and a mirrored
topic's row its newest event and that event's age (the mirror's lag while the partition has
traffic). The log is read only for its bounds; if it cannot be opened the lag columns say so. The
index must not be open in a running 'replayd serve' (Pebble locks it).

` + sourceFlagsHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			out := cmd.OutOrStdout()
			ix, dir, err := openLiveIndex(sf.data)
			if err != nil {
				return err
			}
			defer ix.Close()
			st, err := ix.Stats()
			if err != nil {
				return err
			}
			lags := map[int32]index.PartitionLag{}
			newest := map[int32]int64{} // of mirrored topics' partitions: the newest timestamp
			multi := false
			var srcErr error
			if src, err := openSource(ctx, &sf); err == nil {
				ls, err := ix.Lag(ctx, src)
				srcErr = err
				multi = engine.TopicsOf(src).Len() > 1
				for _, l := range ls {
					lags[l.Partition] = l
					if multi && l.Topic != engine.TopicsOf(src).Name(0) {
						if ts, ok, err := engine.NewestTimestamp(ctx, src, l.Partition); err == nil && ok {
							newest[l.Partition] = ts
						}
					}
				}
				src.Close()
			} else {
				srcErr = err
			}
			fmt.Fprintf(out, "index %s (buckets of %v)\n", dir, ix.Options().BucketWidth)
			fmt.Fprintf(out, "size on disk %s; %d entries holding %d batch offsets (%.1f per entry; keys %s, values %s before compression)\n",
				humanBytes(float64(st.DiskBytes)), st.Entries, st.Offsets, float64(st.Offsets)/float64(max(st.Entries, 1)), humanBytes(float64(st.KeyBytes)), humanBytes(float64(st.ValueBytes)))
			if srcErr != nil {
				fmt.Fprintf(out, "log not read, lag unknown: %v\n", srcErr)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
			if multi {
				// Several topics: index partition i*P+p is partition p of topic i; a mirrored
				// topic's partition also shows its newest event and that event's age (the
				// mirror's lag while the partition has traffic).
				fmt.Fprint(tw, "topic\ttopic partition\t")
			}
			fmt.Fprint(tw, "partition\tcheckpoint\tlog start\tlog end\tlag\tentries\tbuckets\toldest bucket\tnewest bucket\t")
			if multi {
				fmt.Fprint(tw, "newest event\tmirror lag\t")
			}
			fmt.Fprintln(tw)
			seen := map[int32]bool{}
			var ps []index.PartitionStats
			for _, p := range st.Partitions {
				ps = append(ps, p)
				seen[p.Partition] = true
			}
			for p := range lags {
				if !seen[p] {
					ps = append(ps, index.PartitionStats{Partition: p, FirstBucket: -1, LastBucket: -1})
				}
			}
			slices.SortFunc(ps, func(a, b index.PartitionStats) int { return int(a.Partition) - int(b.Partition) })
			for _, p := range ps {
				cp, start, end, lag := "-", "?", "?", "?"
				if p.HasCheckpoint {
					cp = strconv.FormatInt(p.Checkpoint, 10)
				}
				if l, ok := lags[p.Partition]; ok {
					start, end, lag = strconv.FormatInt(l.Start, 10), strconv.FormatInt(l.End, 10), strconv.FormatInt(l.Lag, 10)
				}
				if multi {
					l := lags[p.Partition]
					fmt.Fprintf(tw, "%s\t%d\t", l.Topic, l.TopicPartition)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t", p.Partition, cp, start, end, lag, p.Entries, p.Buckets, bucketTime(p.FirstBucket), bucketTime(p.LastBucket))
				if multi {
					ev, age := "-", "-"
					if ts, ok := newest[p.Partition]; ok {
						ev = time.UnixMilli(ts).UTC().Format(time.RFC3339Nano)
						age = time.Since(time.UnixMilli(ts)).Round(time.Second).String()
					}
					fmt.Fprintf(tw, "%s\t%s\t", ev, age)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	addSourceFlags(cmd.Flags(), &sf)
	return cmd
}

func bucketTime(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04Z")
}
