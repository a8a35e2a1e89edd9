package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/loadgen/produce"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/segment"
)

// dayDuration is a time.Duration flag that also accepts days: "5d", "1d12h".
type dayDuration struct{ d *time.Duration }

func (v dayDuration) String() string {
	if v.d == nil {
		return ""
	}
	if *v.d%(24*time.Hour) == 0 && *v.d != 0 {
		return fmt.Sprintf("%dd", *v.d/(24*time.Hour))
	}
	return v.d.String()
}
func (v dayDuration) Type() string { return "duration" }
func (v dayDuration) Set(s string) error {
	d, err := parseDayDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func parseDayDuration(s string) (time.Duration, error) {
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 90m, 36h or 5d", s)
		}
		days, s = time.Duration(n)*24*time.Hour, s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 90m, 36h or 5d", s)
	}
	return days + d, nil
}

// isTerminal says whether f is a character device (a terminal), without another dependency.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// generatedWebhookIDs returns n snowflake-shaped decimal ids derived from seed.
func generatedWebhookIDs(seed uint64, n int) []string {
	out := make([]string, n)
	base := uint64(1_095_000_000_000_000_000) + (seed%1_000_000)*1_000_000
	for i := range out {
		out[i] = strconv.FormatUint(base+uint64(i)*7919, 10)
	}
	return out
}

func newProduceCommand() *cobra.Command {
	var (
		data, brokers, topic, topics, webhookIDs, mix, manifestPath, end, forUser, codec string
		dcBrokers                                                                        []string
		crossDC                                                                          float64
		events, webhooks, batch, batchBytes                                              int
		partitions                                                                       int32
		rate, skew, dupRate                                                              float64
		jitter, span, linger                                                             time.Duration
		seed                                                                             uint64
		fsync, quiet                                                                     bool
	)
	span = 24 * time.Hour
	jitter = 2 * time.Minute
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Write realistic delivery_log traffic into the embedded log or a Kafka cluster",
		Long: `Write Account Activity events into the delivery_log: by default into the embedded log
DATA/log that 'replayd serve --data DATA' reads in place (it may be running), or with
--kafka-brokers into a Kafka cluster (franz-go, Kafka's murmur2 partitioner, idempotent, acks
from all in-sync replicas).

Batches: --batch-bytes, --linger and --codec are the Java producer's batch.size, linger.ms and
compression.type; the defaults are its defaults (16384 bytes, 5ms) with the delivery_log's codec,
snappy. --batch-bytes and --codec also cut the embedded log's batches (--linger is Kafka only:
an append is a batch at once).

Each record: key = the webhook id, value = an Account Activity payload of 0.5-3 KB whose first
event object's "id_str" is the event id, header event-id = the event id, timestamp = the
event's time. Timestamps are spread evenly over --span ending at --end (default now), whatever
the wall-clock rate, so five days of history take minutes; --jitter moves each one up to that
much earlier (out of order). --dup-rate of the records re-produce one of the last 4096 events
with the same event-id, body and timestamp (producer retries, cross-datacenter mirroring).

Webhooks: --webhook-ids lists ids (for example ones registered through the API); --webhooks N
adds generated ids until there are N in all (default 100 when no ids are given). Traffic is
Zipf-skewed over them in the order listed: webhook k gets a share ∝ 1/k^skew.

--manifest FILE writes the ground truth that 'loadgen verify' reads: a header with these
parameters, then per record its webhook, event id, timestamp and duplicate flag, varint deltas
in a zstd stream (about 2-4 bytes per record; the summary prints the measured size).`,
		Example: `  loadgen produce --events 1000000 --span 5d --webhooks 1000 --manifest run.manifest
  loadgen produce --webhook-ids 1095098195724595200 --webhooks 50 --events 20000 --span 2h --manifest m
  loadgen produce --kafka-brokers localhost:9092 --events 5000000 --rate 20000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("seed") {
				var b [8]byte
				rand.Read(b[:])
				seed = binary.LittleEndian.Uint64(b[:]) >> 1
			}
			ids := splitList(webhookIDs)
			if !cmd.Flags().Changed("webhooks") && len(ids) > 0 {
				webhooks = 0
			}
			if webhooks > len(ids) {
				ids = append(ids, generatedWebhookIDs(seed, webhooks-len(ids))...)
			}
			m, err := traffic.ParseMix(mix)
			if err != nil {
				return err
			}
			endT := time.Now()
			if end != "" {
				if endT, err = time.Parse(time.RFC3339, end); err != nil {
					return fmt.Errorf("--end: %w", err)
				}
			}
			cfg := traffic.Config{Events: events, WebhookIDs: ids, Skew: skew, Mix: m, DupRate: dupRate,
				Jitter: jitter, Span: span, End: endT, Seed: seed, ForUserID: forUser}
			if _, err := traffic.New(cfg); err != nil {
				return err
			}
			bc, err := segment.ParseCodec(codec)
			if err != nil {
				return fmt.Errorf("--codec: %w", err)
			}
			b := produce.Batching{MaxBytes: batchBytes, Linger: linger, Codec: bc}
			if err := b.Validate(); err != nil {
				return fmt.Errorf("--batch-bytes, --linger, --codec: %w", err)
			}
			ctx := cmd.Context() // canceled by SIGINT or SIGTERM (main)
			outs, err := openOutputs(ctx, data, brokers, topic, topics, dcBrokers, partitions, fsync, b)
			if err != nil {
				return err
			}
			if crossDC > 0 && len(outs) < 2 {
				for _, o := range outs {
					o.Close()
				}
				return errors.New("--cross-dc-rate needs two datacenters: --topics T1,T2 or --dc-kafka-brokers twice")
			}
			closeOuts := func() {
				for _, o := range outs {
					o.Close()
				}
			}
			o := produce.Options{Traffic: cfg, Rate: rate, Batch: batch, CrossDCRate: crossDC}
			var mf *os.File
			var mbuf *bufio.Writer
			if manifestPath != "" {
				if mf, err = os.Create(manifestPath); err != nil {
					closeOuts()
					return err
				}
				mbuf = bufio.NewWriterSize(mf, 1<<20)
				o.Manifest = mbuf
			}
			var p *mpb.Progress
			if !quiet && isTerminal(os.Stderr) {
				p = mpb.NewWithContext(ctx, mpb.WithOutput(os.Stderr), mpb.WithWidth(60))
				bar := p.New(int64(events), mpb.BarStyle(),
					mpb.PrependDecorators(decor.Name("produce "), decor.CountersNoUnit("%d / %d")),
					mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), decor.Name(" "),
						decor.AverageSpeed(0, "%.0f ev/s"), decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_GO)))
				o.Progress = func(n int64) { bar.SetCurrent(n) }
				defer func() {
					if !bar.Completed() {
						bar.Abort(false)
					}
					p.Wait()
				}()
			}
			s, runErr := produce.RunDCs(ctx, o, outs)
			if mf != nil {
				runErr = errors.Join(runErr, mbuf.Flush(), mf.Sync(), mf.Close())
			}
			if p != nil && runErr == nil {
				o.Progress(s.Records)
			}
			printSummary(cmd.OutOrStdout(), &s, ids, manifestPath, rate)
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "./data", "data directory of the embedded log (DATA/log, the one 'replayd serve --data DATA' reads)")
	f.Int32Var(&partitions, "partitions", 0, "partition count when the embedded log is new (default 8; an existing log keeps its count)")
	f.BoolVar(&fsync, "fsync", true, "fsync every batch into the embedded log (false: the OS writes back, Close syncs)")
	f.StringVar(&brokers, "kafka-brokers", "", "comma-separated Kafka seed brokers: produce there instead of the embedded log")
	f.StringVar(&topic, "topic", "delivery_log", "Kafka topic (with --kafka-brokers)")
	f.StringVar(&topics, "topics", "", "two datacenters' traffic or more, one topic each: comma-separated topics of --kafka-brokers, or of the embedded log (the first in DATA/log, the others in DATA/log.<topic>, as 'replayd serve --topics' reads them: what dc1 holds once MirrorMaker has copied dc2's)")
	f.StringArrayVar(&dcBrokers, "dc-kafka-brokers", nil, "repeated: each datacenter's Kafka cluster (comma-separated brokers), its --topic written; MirrorMaker 2 then mirrors them into each other")
	f.Float64Var(&crossDC, "cross-dc-rate", 0, "with two datacenters or more: the share of events also written into a second one (a retry that crossed datacenters)")
	f.IntVar(&events, "events", 100000, "records to produce, duplicates included")
	f.Float64Var(&rate, "rate", 0, "records per second (0: as fast as possible); timestamps follow --span, not the wall clock")
	f.IntVar(&webhooks, "webhooks", 100, "webhooks in all: generated ids are added to --webhook-ids until there are this many")
	f.StringVar(&webhookIDs, "webhook-ids", "", "comma-separated webhook ids to produce for, hottest first (e.g. registered through the API)")
	f.Float64Var(&skew, "skew", 1.1, "Zipf exponent: webhook k gets a share ∝ 1/k^skew (0: uniform)")
	f.StringVar(&mix, "mix", "", "event-type weights, e.g. tweet_create=35,favorite=30,follow=10,direct_message=12 (default: that plus typing, mark_read, block, mute; types: "+strings.Join(traffic.Types, ", ")+")")
	f.Float64Var(&dupRate, "dup-rate", 0.01, "fraction of records that re-produce a recent event with the same event-id")
	f.Var(dayDuration{&jitter}, "jitter", "each timestamp is up to this much earlier than its place in the sequence (out of order)")
	f.Var(dayDuration{&span}, "span", "timestamps are spread over this span ending at --end (e.g. 5d, 36h)")
	f.StringVar(&end, "end", "", "end of the span, RFC3339 (default: now)")
	f.Uint64Var(&seed, "seed", 0, "random seed; the same seed and flags produce the same events (default: random, printed)")
	f.StringVar(&manifestPath, "manifest", "", "write the ground truth of what was produced to this file (for 'loadgen verify')")
	f.IntVar(&batch, "batch", 500, "records handed to the output at once (not a batch's size: see --batch-bytes)")
	f.IntVar(&batchBytes, "batch-bytes", produce.DefaultBatching.MaxBytes, "most bytes of records in one record batch, before compression (the Java producer's batch.size)")
	f.DurationVar(&linger, "linger", produce.DefaultBatching.Linger, "how long a Kafka batch waits to fill before it is sent (linger.ms; Kafka only)")
	f.StringVar(&codec, "codec", produce.DefaultBatching.Codec.String(), "batch compression: none, gzip, snappy, lz4 or zstd (compression.type)")
	f.StringVar(&forUser, "for-user-id", "2244994945", "the payloads' for_user_id")
	f.BoolVar(&quiet, "quiet", false, "no progress bar (there is none anyway when stderr is not a terminal)")
	return cmd
}

// openOutputs opens the datacenters' outputs: one per --dc-kafka-brokers, else one per --topics
// (of --kafka-brokers or of the embedded log), else the one of --kafka-brokers or the embedded
// log.
func openOutputs(ctx context.Context, data, brokers, topic, topics string, dcBrokers []string, partitions int32, fsync bool, b produce.Batching) ([]produce.Output, error) {
	var outs []produce.Output
	fail := func(err error) ([]produce.Output, error) {
		for _, o := range outs {
			o.Close()
		}
		return nil, err
	}
	switch {
	case len(dcBrokers) > 0:
		if topics != "" || brokers != "" {
			return nil, errors.New("--dc-kafka-brokers names each datacenter's cluster: not with --topics or --kafka-brokers")
		}
		for i, bs := range dcBrokers {
			out, err := produce.OpenKafka(ctx, splitList(bs), topic, b)
			if err != nil {
				return fail(fmt.Errorf("datacenter %d: %w", i+1, err))
			}
			outs = append(outs, out)
		}
	case topics != "":
		list := splitList(topics)
		seen := map[string]bool{}
		for i, t := range list {
			if seen[t] {
				return fail(fmt.Errorf("--topics lists %s twice", t))
			}
			seen[t] = true
			var out produce.Output
			var err error
			if brokers != "" {
				out, err = produce.OpenKafka(ctx, splitList(brokers), t, b)
			} else {
				dir := filepath.Join(data, "log")
				if i > 0 {
					dir = engine.EmbeddedTopicDir(dir, t)
				}
				out, err = produce.OpenEmbeddedTopic(dir, t, partitions, fsync, b)
			}
			if err != nil {
				return fail(fmt.Errorf("topic %s: %w", t, err))
			}
			outs = append(outs, out)
		}
	case brokers != "":
		out, err := produce.OpenKafka(ctx, splitList(brokers), topic, b)
		if err != nil {
			return nil, err
		}
		outs = append(outs, out)
	default:
		out, err := produce.OpenEmbedded(filepath.Join(data, "log"), partitions, fsync, b)
		if err != nil {
			return nil, err
		}
		outs = append(outs, out)
	}
	return outs, nil
}

func printSummary(w io.Writer, s *produce.Summary, ids []string, manifestPath string, rate float64) {
	secs := s.Elapsed.Seconds()
	fmt.Fprintf(w, "produced %d records (%d unique events, %d duplicates = %.2f%%) into %s\n",
		s.Records, s.Unique, s.Duplicates, pct(s.Duplicates, s.Records), s.Target)
	fmt.Fprintf(w, "  time span  %s .. %s (%s)\n", time.UnixMilli(s.StartMS).UTC().Format(time.RFC3339),
		time.UnixMilli(s.EndMS).UTC().Format(time.RFC3339), time.Duration(s.EndMS-s.StartMS)*time.Millisecond)
	if s.Records > 0 {
		fmt.Fprintf(w, "  payloads   %.1f MB, %d B avg, %d..%d B\n", float64(s.Bytes)/1e6, s.Bytes/s.Records, s.MinBody, s.MaxBody)
	}
	if secs > 0 {
		fmt.Fprintf(w, "  elapsed    %s, %.0f records/s, %.1f MB/s", s.Elapsed.Round(time.Millisecond), float64(s.Records)/secs, float64(s.Bytes)/1e6/secs)
		if rate > 0 {
			fmt.Fprintf(w, " (rate limit %.0f/s)", rate)
		}
		fmt.Fprintln(w)
	}
	if len(s.PerDC) > 1 {
		fmt.Fprintf(w, "  datacenters")
		for i, n := range s.PerDC {
			fmt.Fprintf(w, " dc%d %d records;", i+1, n)
		}
		fmt.Fprintf(w, " %d events also into a second (%.2f%% of the records)\n", s.CrossDC, pct(s.CrossDC, s.Records))
	}
	fmt.Fprintf(w, "  webhooks   %d; top 1 holds %.1f%%, top 10 %.1f%% of records\n", s.Webhooks, 100*s.TopShare(1), 100*s.TopShare(10))
	order := make([]int, len(s.PerWebhook))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return s.PerWebhook[order[a]] > s.PerWebhook[order[b]] })
	for _, i := range order[:min(5, len(order))] {
		fmt.Fprintf(w, "             %s  %d records\n", ids[i], s.PerWebhook[i])
	}
	types := make([]string, 0, len(s.PerType))
	for t := range s.PerType {
		types = append(types, t)
	}
	sort.Slice(types, func(a, b int) bool { return s.PerType[types[a]] > s.PerType[types[b]] })
	fmt.Fprintf(w, "  types     ")
	for _, t := range types {
		fmt.Fprintf(w, " %s %.1f%%", strings.TrimSuffix(t, "_events"), pct(s.PerType[t], s.Records))
	}
	fmt.Fprintln(w)
	if manifestPath != "" && s.Records > 0 {
		fmt.Fprintf(w, "  manifest   %s: %d bytes, %.2f bytes/record\n", manifestPath, s.ManifestBytes, float64(s.ManifestBytes)/float64(s.Records))
	}
	fmt.Fprintf(w, "  seed       %d\n", s.Seed)
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
