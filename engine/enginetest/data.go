// Package enginetest is the conformance suite every engine.Source implementation passes: the same
// batches written into each, the same questions asked, the same records expected back.
package enginetest

import (
	"testing"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

// Record is a record the suite writes.
type Record struct {
	Key       []byte
	Value     []byte
	Timestamp int64
	Headers   []segment.Header
}

// Batch is a batch the suite writes. Implementations must keep batch boundaries: one Batch
// becomes one record batch in the log.
type Batch struct {
	Codec   segment.Codec
	Records []Record
}

// Encode encodes b as a magic-2 batch starting at baseOffset.
func Encode(t testing.TB, b Batch, baseOffset int64) []byte {
	t.Helper()
	var bld segment.Builder
	for i := range b.Records {
		r := &b.Records[i]
		bld.Add(&segment.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers})
	}
	raw, err := bld.Build(nil, segment.BatchOptions{BaseOffset: baseOffset, Codec: b.Codec})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Harness is what a Factory hands the suite.
type Harness struct {
	Source engine.Source
	// Append appends one more batch to a partition while the source is open, as the log's
	// producer would; nil when the source cannot be written to, and then tailing is not tested.
	Append func(t *testing.T, partition int32, b Batch)
}

// Factory builds a source of the topic whose partition p holds exactly data[p], batch by batch,
// from offset 0. Implementations that store segments should roll them often (every few batches)
// so that reads cross segment boundaries.
type Factory func(t *testing.T, topic string, data [][]Batch) Harness
