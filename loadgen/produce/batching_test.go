package produce

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/segment"
)

// Batching cuts the embedded log's batches too: the codec asked for, and cut once they reach
// MaxBytes, so only their last record goes past it (Linger has no effect there).
func TestBatchingEmbedded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	out, err := OpenEmbedded(dir, 2, false, Batching{MaxBytes: 4096, Codec: segment.CodecLZ4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Options{Traffic: config(1000), Batch: 256}, out); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenDir(engine.DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	records := len(readAll(t, src))
	var batches, biggest int
	var rr segment.RecordReader
	for p := int32(0); p < 2; p++ {
		err := src.Scan(t.Context(), p, 0, func(b *segment.Batch) error {
			if b.Codec() != segment.CodecLZ4 {
				t.Fatalf("batch at %d/%d in %v, want lz4", p, b.BaseOffset, b.Codec())
			}
			if err := rr.Reset(b); err != nil {
				return err
			}
			size, last := 0, 0
			for rr.Next() {
				r := rr.Record()
				last = len(r.Key) + len(r.Value)
				for _, h := range r.Headers {
					last += len(h.Key) + len(h.Value)
				}
				size += last
			}
			if size-last >= 4096 {
				t.Fatalf("batch at %d/%d holds %d record bytes before its last record, 4096 or more", p, b.BaseOffset, size-last)
			}
			batches++
			biggest = max(biggest, size)
			return rr.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if records != 1000 || batches < 1000*1000/4096 || biggest < 2048 {
		t.Fatalf("%d records in %d batches, the biggest %d record bytes", records, batches, biggest)
	}
}

func TestBatchingValidate(t *testing.T) {
	if err := DefaultBatching.Validate(); err != nil {
		t.Fatal(err)
	}
	err := Batching{MaxBytes: 0, Linger: -time.Millisecond, Codec: segment.Codec(9)}.Validate()
	for _, want := range []string{"batch bytes 0", "linger -1ms", "codec"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate: %v, want it to name %q", err, want)
		}
	}
}
