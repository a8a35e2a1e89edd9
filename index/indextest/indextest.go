// Package indextest makes delivery_log data for the index's tests and benchmarks: many webhooks
// with Zipf-skewed traffic, duplicate events, timestamps out of order, control batches, and the
// brute-force truth a lookup is checked against.
package indextest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

// Hot is a webhook given a fixed share of all events.
type Hot struct {
	Key   []byte
	Share float64
}

// Spec describes generated traffic.
type Spec struct {
	Events   int     // records to append (duplicates included)
	Webhooks int     // webhooks sharing the Zipf-skewed traffic
	Zipf     float64 // Zipf exponent s > 1; default 1.1
	Hot      []Hot   // webhooks with fixed shares, drawn before the Zipf ones
	// DupRate is the fraction of events appended a second time, later (producer retries,
	// cross-datacenter replication).
	DupRate float64
	// Start and Span: event times advance evenly over [Start, Start+Span); Jitter moves each
	// one by up to ±Jitter, so timestamps go backwards within a partition.
	Start  time.Time
	Span   time.Duration
	Jitter time.Duration
	// ValueSize is the approximate size of a value in bytes; default 1024.
	ValueSize int
	// Chunk is how many records one Append call takes (the log cuts batches at its
	// MaxBatchBytes); default 64.
	Chunk int
	// ControlEvery appends a commit marker to a random partition every this many chunks; 0 never.
	ControlEvery int
	Seed         uint64
}

// Webhook is the key of the i-th Zipf webhook: decimal ids, except every 50th, which is not a
// number (it exercises the hashed ids).
func Webhook(i int) []byte {
	if i%50 == 49 {
		return []byte("app-" + strconv.Itoa(i))
	}
	return strconv.AppendUint(nil, 1095098195724595200+uint64(i)*7919, 10)
}

var words = []string{"the", "replay", "webhook", "tweet", "follow", "like", "event", "created", "user",
	"screen_name", "favorite", "direct", "message", "typing", "indicate", "block", "mute", "delete",
	"timestamp", "entities", "hashtags", "urls", "mentions", "retweet", "quote", "reply", "status",
	"lang", "en", "source", "platform", "account", "activity", "subscription", "developer", "api"}

// Generate appends spec's traffic to log and returns how many records it appended.
func Generate(ctx context.Context, log *engine.Log, spec Spec) (int, error) {
	if spec.Zipf == 0 {
		spec.Zipf = 1.1
	}
	if spec.ValueSize == 0 {
		spec.ValueSize = 1024
	}
	if spec.Chunk == 0 {
		spec.Chunk = 64
	}
	if spec.Webhooks == 0 {
		spec.Webhooks = 1
	}
	if spec.Span == 0 {
		spec.Span = time.Hour
	}
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	zipf := rand.NewZipf(rng, spec.Zipf, 1, uint64(spec.Webhooks-1))
	n, err := log.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	start := spec.Start.UnixMilli()
	span := spec.Span.Milliseconds()
	jitter := spec.Jitter.Milliseconds()
	var dups []engine.Record
	appended := 0
	chunk := make([]engine.Record, 0, spec.Chunk)
	var val bytes.Buffer
	for i, c := 0, 0; i < spec.Events; c++ {
		chunk = chunk[:0]
		for len(chunk) < spec.Chunk && i < spec.Events {
			if len(dups) > 0 && rng.Float64() < 0.5 {
				chunk = append(chunk, dups[0])
				dups = dups[1:]
				i++
				continue
			}
			var key []byte
			u := rng.Float64()
			for _, h := range spec.Hot {
				if u < h.Share {
					key = h.Key
					break
				}
				u -= h.Share
			}
			if key == nil {
				key = Webhook(int(zipf.Uint64()))
			}
			ts := start + int64(i)*span/int64(max(spec.Events, 1))
			if jitter > 0 {
				ts += rng.Int64N(2*jitter+1) - jitter
			}
			val.Reset()
			fmt.Fprintf(&val, `{"for_user_id":"%d","tweet_create_events":[{"id_str":"%d","created_at":%d,"text":"`, rng.Uint64()>>12, rng.Uint64()>>8, ts)
			for val.Len() < spec.ValueSize-4 {
				val.WriteString(words[rng.IntN(len(words))])
				val.WriteByte(' ')
			}
			val.WriteString(`"}]}`)
			r := engine.Record{Key: key, Value: bytes.Clone(val.Bytes()), Timestamp: ts}
			if rng.Float64() < 0.5 {
				r.Headers = []segment.Header{{Key: []byte("event-id"), Value: strconv.AppendUint(nil, rng.Uint64(), 16)}}
			}
			chunk = append(chunk, r)
			if rng.Float64() < spec.DupRate {
				dups = append(dups, r)
			}
			i++
		}
		if _, err := log.Append(ctx, chunk); err != nil {
			return appended, err
		}
		appended += len(chunk)
		if spec.ControlEvery > 0 && c%spec.ControlEvery == spec.ControlEvery-1 {
			var b segment.Builder
			b.Add(&segment.Record{Key: segment.ControlKey(segment.ControlCommit), Value: []byte{0, 0, 0, 0, 0, 0}, Timestamp: start})
			raw, err := b.Build(nil, segment.BatchOptions{Control: true, Transactional: true})
			if err != nil {
				return appended, err
			}
			if _, err := log.AppendBatches(ctx, int32(rng.IntN(int(n))), raw); err != nil {
				return appended, err
			}
		}
	}
	return appended, nil
}

// Truth is the brute-force answer to a lookup: the base offsets of partition p's data batches
// holding a record with key webhook and from ≤ timestamp < to, read by scanning the whole
// partition.
func Truth(ctx context.Context, src engine.Source, p int32, webhook []byte, from, to int64) ([]int64, error) {
	var out []int64
	var rr segment.RecordReader
	err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
		if b.IsControl() {
			return nil
		}
		if err := rr.Reset(b); err != nil {
			return err
		}
		for rr.Next() {
			r := rr.Record()
			if r.Timestamp >= from && r.Timestamp < to && bytes.Equal(r.Key, webhook) {
				out = append(out, b.BaseOffset)
				return nil
			}
		}
		return rr.Err()
	})
	return out, err
}

// TruthAll is Truth for many webhooks at once: for each partition, each webhook key's
// (batch base offset, timestamp) pairs of data records, in offset order.
func TruthAll(ctx context.Context, src engine.Source) (map[string][]Occurrence, error) {
	n, err := src.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]Occurrence{}
	var rr segment.RecordReader
	for p := int32(0); p < n; p++ {
		err := src.Scan(ctx, p, 0, func(b *segment.Batch) error {
			if b.IsControl() {
				return nil
			}
			if err := rr.Reset(b); err != nil {
				return err
			}
			for rr.Next() {
				r := rr.Record()
				out[string(r.Key)] = append(out[string(r.Key)], Occurrence{Partition: p, Batch: b.BaseOffset, Timestamp: r.Timestamp})
			}
			return rr.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Occurrence is one record of a webhook: its partition, batch and timestamp.
type Occurrence struct {
	Partition int32
	Batch     int64
	Timestamp int64
}

// Batches are the distinct batches of occurrences with from ≤ timestamp < to, ascending.
func Batches(occ []Occurrence, from, to int64) []int64 {
	var out []int64
	for _, o := range occ {
		if o.Timestamp >= from && o.Timestamp < to && (len(out) == 0 || out[len(out)-1] != o.Batch) {
			out = append(out, o.Batch)
		}
	}
	return out
}
