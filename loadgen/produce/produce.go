// Package produce writes generated traffic (package traffic) into a delivery_log, the embedded
// log or a Kafka cluster, at a given rate, and records the ground truth in a manifest.
package produce

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/loadgen/manifest"
	"github.com/replay/replay/replayd/traffic"
	"github.com/replay/replay/segment"
)

// Output is where records go.
type Output interface {
	// Write appends records; it may return before they are durable (Close waits for them).
	Write(ctx context.Context, recs []engine.Record) error
	// Close flushes what was written and releases the output.
	Close() error
	// String names the output for the manifest and the summary.
	String() string
}

// Embedded is an Output into the embedded log at dir (DATA/log).
type Embedded struct {
	Log *engine.Log
	dir string
}

// OpenEmbedded opens (or creates, with partitions partitions) the embedded log in dir; its
// appends cut batches of at most b.MaxBytes of records in codec b.Codec (b.Linger is for Kafka:
// an append is a batch at once).
func OpenEmbedded(dir string, partitions int32, sync bool, b Batching) (*Embedded, error) {
	return OpenEmbeddedTopic(dir, "", partitions, sync, b)
}

// OpenEmbeddedTopic is OpenEmbedded of a log of topic ("": delivery_log): a mirrored topic's
// embedded log (engine.EmbeddedTopicDir).
func OpenEmbeddedTopic(dir, topic string, partitions int32, sync bool, b Batching) (*Embedded, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	o := engine.Options{Dir: dir, Topic: topic, Partitions: partitions, MaxBatchBytes: b.MaxBytes}.WithCodec(b.Codec)
	if !sync {
		o.Sync = engine.SyncNever
	}
	l, err := engine.Open(o)
	if err != nil {
		return nil, err
	}
	return &Embedded{Log: l, dir: dir}, nil
}

func (e *Embedded) Write(ctx context.Context, recs []engine.Record) error {
	_, err := e.Log.Append(ctx, recs)
	return err
}
func (e *Embedded) Close() error   { return e.Log.Close() }
func (e *Embedded) String() string { return "embedded:" + e.dir }

// Batching is how a producer cuts and compresses its record batches: the Java producer's
// batch.size, linger.ms and compression.type.
type Batching struct {
	// MaxBytes bounds the records of one batch, before compression (batch.size). franz-go never
	// goes past it and refuses a record larger than it alone, where Java's producer would send
	// it in a batch of its own; the embedded log cuts a batch once it reaches MaxBytes
	// (engine.Options.MaxBatchBytes), so there only its last record goes past.
	MaxBytes int
	// Linger is how long a partition's batch waits for more records before it is sent
	// (linger.ms); 0 sends what is there at once.
	Linger time.Duration
	// Codec compresses each batch (compression.type).
	Codec segment.Codec
}

// DefaultBatching is the Java producer's defaults in Kafka 4 (batch.size 16384, linger.ms 5)
// with the delivery_log's codec, snappy.
var DefaultBatching = Batching{MaxBytes: 16 << 10, Linger: 5 * time.Millisecond, Codec: segment.CodecSnappy}

// Validate reports every problem with b at once.
func (b Batching) Validate() error {
	var errs []error
	if b.MaxBytes < 1 || b.MaxBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("batch bytes %d is outside [1, %d] (the broker's default max.message.bytes)", b.MaxBytes, 1<<20))
	}
	if b.Linger < 0 {
		errs = append(errs, fmt.Errorf("linger %v is negative", b.Linger))
	}
	if _, err := b.kgoCodec(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b Batching) kgoCodec() (kgo.CompressionCodec, error) {
	switch b.Codec {
	case segment.CodecNone:
		return kgo.NoCompression(), nil
	case segment.CodecGzip:
		return kgo.GzipCompression(), nil
	case segment.CodecSnappy:
		return kgo.SnappyCompression(), nil
	case segment.CodecLZ4:
		return kgo.Lz4Compression(), nil
	case segment.CodecZstd:
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("codec %v: want none, gzip, snappy, lz4 or zstd", b.Codec)
}

// Kafka is an Output into a Kafka cluster through franz-go: Kafka's default (murmur2) partitioner
// for keyed records, batches as Batching says, acks from all in-sync replicas, idempotent.
type Kafka struct {
	cl      *kgo.Client
	brokers []string
	topic   string
	mu      sync.Mutex
	err     error
	wg      sync.WaitGroup
}

// KafkaClientOpts are the producer options Kafka uses for b (which must be valid); extra options
// are appended.
func KafkaClientOpts(brokers []string, topic string, b Batching, extra ...kgo.Opt) []kgo.Opt {
	codec, _ := b.kgoCodec()
	return append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // nil hasher: Kafka's murmur2
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerBatchMaxBytes(int32(b.MaxBytes)),
		kgo.ProducerLinger(b.Linger),
		kgo.ClientID("loadgen"),
	}, extra...)
}

// OpenKafka connects to the brokers.
func OpenKafka(ctx context.Context, brokers []string, topic string, b Batching, extra ...kgo.Opt) (*Kafka, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(KafkaClientOpts(brokers, topic, b, extra...)...)
	if err != nil {
		return nil, err
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka brokers %v: %w", brokers, err)
	}
	return &Kafka{cl: cl, brokers: brokers, topic: topic}, nil
}

func (k *Kafka) Write(ctx context.Context, recs []engine.Record) error {
	k.mu.Lock()
	err := k.err
	k.mu.Unlock()
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		kr := &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: string(h.Key), Value: h.Value})
		}
		k.wg.Add(1)
		k.cl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			defer k.wg.Done()
			if err != nil {
				k.mu.Lock()
				if k.err == nil {
					k.err = err
				}
				k.mu.Unlock()
			}
		})
	}
	return nil
}

func (k *Kafka) Close() error {
	err := k.cl.Flush(context.Background())
	k.wg.Wait()
	k.cl.Close()
	k.mu.Lock()
	defer k.mu.Unlock()
	return errors.Join(err, k.err)
}

func (k *Kafka) String() string { return fmt.Sprintf("kafka:%v/%s", k.brokers, k.topic) }

// Options of a run.
type Options struct {
	Traffic  traffic.Config
	Rate     float64       // records per second; 0 = as fast as possible
	Batch    int           // records per Write; default 500
	Manifest io.Writer     // the manifest, when not nil
	Progress func(n int64) // called with the records written so far, after each batch
	// CrossDCRate is, for a run into several datacenters (RunDCs), the share of events that
	// are also written into a second one (a retry that crossed datacenters): the same event id,
	// body and timestamp, recorded in the manifest as a duplicate in that datacenter.
	CrossDCRate float64
}

// Summary is what a run produced.
type Summary struct {
	Target        string
	Records       int64
	Unique        int64
	Duplicates    int64
	Webhooks      int
	PerWebhook    []int64 // records per webhook index
	PerType       map[string]int64
	Bytes         int64 // value bytes
	MinBody       int
	MaxBody       int
	StartMS       int64
	EndMS         int64
	Elapsed       time.Duration
	ManifestBytes int64
	Seed          uint64
	// PerDC are the records written into each datacenter (one entry for one), CrossDC the
	// copies written into a second datacenter (counted in Records and Duplicates).
	PerDC   []int64
	CrossDC int64
}

// TopShare is the fraction of records held by the k busiest webhooks.
func (s *Summary) TopShare(k int) float64 {
	c := append([]int64(nil), s.PerWebhook...)
	sort.Slice(c, func(i, j int) bool { return c[i] > c[j] })
	var top int64
	for i := 0; i < k && i < len(c); i++ {
		top += c[i]
	}
	if s.Records == 0 {
		return 0
	}
	return float64(top) / float64(s.Records)
}

// Run generates the traffic and writes it to out (which it closes) and to the manifest.
func Run(ctx context.Context, o Options, out Output) (Summary, error) {
	return RunDCs(ctx, o, []Output{out})
}

// RunDCs generates the traffic of several datacenters, outs[i] being datacenter i's
// delivery_log (all of which it closes): each event goes into one datacenter, chosen at random
// (deterministically from the seed), and a share o.CrossDCRate also into another. The manifest
// records each record's datacenter (version 2; names: the outputs).
func RunDCs(ctx context.Context, o Options, outs []Output) (_ Summary, err error) {
	defer func() {
		for _, out := range outs {
			err = errors.Join(err, out.Close())
		}
	}()
	if len(outs) == 0 || len(outs) > manifest.MaxDCs {
		return Summary{}, fmt.Errorf("produce: %d datacenters, want 1 to %d", len(outs), manifest.MaxDCs)
	}
	if o.CrossDCRate < 0 || o.CrossDCRate > 1 || (o.CrossDCRate > 0 && len(outs) < 2) {
		return Summary{}, fmt.Errorf("produce: cross-datacenter rate %v: want 0 to 1, and two datacenters or more", o.CrossDCRate)
	}
	g, err := traffic.New(o.Traffic)
	if err != nil {
		return Summary{}, err
	}
	cfg := g.Config()
	if o.Batch <= 0 {
		o.Batch = 500
	}
	names := make([]string, len(outs))
	for i, out := range outs {
		names[i] = out.String()
	}
	s := Summary{Target: strings.Join(names, " + "), Webhooks: len(cfg.WebhookIDs), PerWebhook: make([]int64, len(cfg.WebhookIDs)),
		PerType: map[string]int64{}, StartMS: g.Start(), EndMS: g.End(), MinBody: -1, Seed: cfg.Seed, PerDC: make([]int64, len(outs))}
	var mw *manifest.Writer
	if o.Manifest != nil {
		h := manifest.Header{
			Target: s.Target, Seed: cfg.Seed, Events: cfg.Events, StartMS: g.Start(), EndMS: g.End(),
			Skew: cfg.Skew, DupRate: cfg.DupRate, JitterMS: cfg.Jitter.Milliseconds(), Mix: cfg.Mix, Rate: o.Rate,
			Webhooks: cfg.WebhookIDs,
		}
		if len(outs) > 1 {
			h.DCs, h.CrossDCRate = names, o.CrossDCRate
		}
		if mw, err = manifest.NewWriter(o.Manifest, h); err != nil {
			return s, err
		}
	}
	// The datacenters' choice: its own stream of the seed, so the events are those of a run
	// into one datacenter with the same seed.
	dcRand := mrand.New(mrand.NewPCG(cfg.Seed, 0x2dc))
	// With a rate, writes are smaller (about ten a second at least) and the limiter's burst is
	// one write, so the rate holds from the start.
	size := o.Batch
	var lim *rate.Limiter
	if o.Rate > 0 {
		size = max(1, min(o.Batch, int(o.Rate/10)))
		lim = rate.NewLimiter(rate.Limit(o.Rate), size)
	}
	keys := make([][]byte, len(cfg.WebhookIDs))
	for i, id := range cfg.WebhookIDs {
		keys[i] = []byte(id)
	}
	began := time.Now()
	var written atomic.Int64
	batches := make([][]engine.Record, len(outs))
	flush := func(dc int) error {
		batch := batches[dc]
		if len(batch) == 0 {
			return nil
		}
		if lim != nil {
			if err := lim.WaitN(ctx, len(batch)); err != nil {
				return err
			}
		}
		if err := outs[dc].Write(ctx, batch); err != nil {
			return err
		}
		n := written.Add(int64(len(batch)))
		if o.Progress != nil {
			o.Progress(n)
		}
		batches[dc] = batch[:0]
		return nil
	}
	flushAll := func() error {
		for dc := range outs {
			if err := flush(dc); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return s, finish(mw, &s, err)
		}
		ev, ok := g.Next()
		if !ok {
			break
		}
		id := strconv.FormatUint(ev.ID, 10)
		rec := engine.Record{
			Key: keys[ev.Webhook], Value: ev.Body, Timestamp: ev.Timestamp,
			Headers: []segment.Header{{Key: []byte(traffic.EventIDHeader), Value: []byte(id)}},
		}
		dc := 0
		if len(outs) > 1 {
			dc = dcRand.IntN(len(outs))
		}
		copies := []int{dc}
		if o.CrossDCRate > 0 && dcRand.Float64() < o.CrossDCRate {
			copies = append(copies, (dc+1+dcRand.IntN(len(outs)-1))%len(outs))
		}
		for i, c := range copies {
			batches[c] = append(batches[c], rec)
			dup := ev.Duplicate || i > 0
			if mw != nil {
				if err := mw.Add(manifest.Entry{Webhook: uint32(ev.Webhook), ID: ev.ID, Timestamp: ev.Timestamp, Duplicate: dup, DC: uint8(c)}); err != nil {
					return s, err
				}
			}
			s.Records++
			s.PerDC[c]++
			if i > 0 {
				s.CrossDC++
			}
			if dup {
				s.Duplicates++
			} else {
				s.Unique++
			}
			s.PerWebhook[ev.Webhook]++
			s.PerType[ev.Type]++
			s.Bytes += int64(len(ev.Body))
		}
		if s.MinBody < 0 || len(ev.Body) < s.MinBody {
			s.MinBody = len(ev.Body)
		}
		s.MaxBody = max(s.MaxBody, len(ev.Body))
		for _, c := range copies {
			if len(batches[c]) >= size {
				if err := flush(c); err != nil {
					return s, finish(mw, &s, err)
				}
			}
		}
	}
	if err := flushAll(); err != nil {
		return s, finish(mw, &s, err)
	}
	s.Elapsed = time.Since(began)
	return s, finish(mw, &s, nil)
}

// finish closes the manifest. A failed run's manifest is still closed (it records what was
// generated, which may be more than was written), and the error says so.
func finish(mw *manifest.Writer, s *Summary, runErr error) error {
	if mw == nil {
		return runErr
	}
	err := mw.Close()
	s.ManifestBytes = mw.Bytes()
	if runErr != nil {
		return fmt.Errorf("%w (the manifest lists %d records generated; the last batch may not have been written)", runErr, mw.Count())
	}
	return err
}
