package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/segment"
)

// scanAll decodes every record of every partition, partitions in parallel (GOMAXPROCS at once),
// and returns the count: the plain scan an index rebuild is compared with.
func scanAll(ctx context.Context, src engine.Source) (int64, error) {
	n, err := src.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	var total int64
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for p := int32(0); p < n; p++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var rr segment.RecordReader
			var c int64
			var sink int
			err := src.Scan(ctx, p, 0, func(bt *segment.Batch) error {
				if err := rr.Reset(bt); err != nil {
					return err
				}
				for rr.Next() {
					r := rr.Record()
					c++
					sink += len(r.Key) + int(r.Timestamp&1)
				}
				return rr.Err()
			})
			mu.Lock()
			total += c + int64(sink&0)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return total, errs[0]
	}
	return total, nil
}

// rebuildOnce builds a fresh index of src in dir and returns the build time, then compacts it and
// returns the settled table bytes; the directory is removed.
func rebuildOnce(ctx context.Context, src engine.Source, dir string) (time.Duration, int64, error) {
	defer os.RemoveAll(dir)
	start := time.Now()
	ix, err := buildIndex(ctx, src, dir)
	if err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start)
	defer ix.Close()
	if err := ix.Compact(ctx); err != nil {
		return 0, 0, err
	}
	st, err := ix.Stats()
	if err != nil {
		return 0, 0, err
	}
	return elapsed, st.TableBytes, nil
}

// runBuild is benchmark 3: events/s of an index rebuild from segments vs the plain scan of the
// same segments, and index bytes / log bytes.
func runBuild(ctx context.Context, c *Config) (*Report, error) {
	rep := &Report{Name: "build", Title: "3. Index build: rebuild from segments vs the plain scan"}
	d, err := c.indexData(ctx)
	if err != nil {
		return rep, err
	}
	rep.Setup = fmt.Sprintf("Data: the replay data set (%d records, %.1f MB of segments in 2 partitions, DirSource). "+
		"**scan** decodes every record of every partition (partitions in parallel, GOMAXPROCS at once); **rebuild** "+
		"builds a fresh index from the same segments (`index.Build`, synced Pebble commits every %d records; "+
		"the time excludes the compaction after it). Index size = live sstables after `Compact` ÷ `.log` bytes. "+
		"Variants alternate within a run.", d.records, float64(d.logBytes)/1e6, index.DefaultCommitRecords)
	for run := 0; run < c.Runs; run++ {
		for i := 0; i < 2; i++ {
			if (i+run)%2 == 0 {
				start := time.Now()
				n, err := scanAll(ctx, d.src)
				if err != nil {
					return rep, err
				}
				el := time.Since(start)
				rep.add("", "scan", "events/s", "events/s", true, float64(n)/el.Seconds())
				rep.add("", "scan", "log MB/s", "MB/s", true, float64(d.logBytes)/1e6/el.Seconds())
			} else {
				el, table, err := rebuildOnce(ctx, d.src, filepath.Join(c.TempDir, "rebuild-"+strconv.Itoa(run)))
				if err != nil {
					return rep, err
				}
				rep.add("", "rebuild", "events/s", "events/s", true, float64(d.records)/el.Seconds())
				rep.add("", "rebuild", "log MB/s", "MB/s", true, float64(d.logBytes)/1e6/el.Seconds())
				rep.add("", "rebuild", "index bytes / log bytes", "%", false, 100*float64(table)/float64(d.logBytes))
			}
		}
	}
	rep.compare("", "rebuild", "scan", "events/s")
	rep.Compare[len(rep.Compare)-1].IsCeilingFactor = true
	rep.Notes = append(rep.Notes, "What bounds the ratio, profiled (`go test -cpuprofile` of 5 rebuilds and 5 scans of this "+
		"data set, 2 shared cores): a rebuild takes 1.10× the scan's CPU (2.44 vs 2.21 s each; 1.22× before the builder "+
		"handed batches over in runs, decoded keys only with `NextKey`, parsed `WebhookID` eight digits at a time and "+
		"committed every 262144 records); 82% of its samples are the same decoding (snappy alone 67%), the rest the "+
		"index's: the aggregation 6.0%, commits 4.8% (their encoding 2.5%, Pebble's commit 2.3%), `WebhookID` 1.5%, "+
		"copying batches into runs for the decoders 1.0%, the decoders' dedup 0.9%. The scan decodes each partition on "+
		"one core, and partition 0 holds 59% of the records, so its time is that partition's while the other core idles "+
		"for a third of it; the rebuild spreads every partition over both cores (`index` builder), so on two free cores "+
		"its time is at best 1.10 × 2.21 / 2 = 1.22 s against the scan's 0.59 × 2.21 = 1.30 s: a ceiling of about "+
		"1.07×, lower when other work holds a core.")
	return rep, nil
}
