package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/replay/replay/engine"
)

// A SourceSpec opens the implementation it names, and refuses one it could not open.
func TestSourceSpec(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "log")
	for _, bad := range []engine.SourceSpec{{Kind: engine.SourceEmbedded}, {Kind: engine.SourceSegments}, {Kind: engine.SourceKafka}, {Kind: 9, Dir: dir}} {
		if _, err := bad.Open(ctx); err == nil {
			t.Fatalf("%v opened", bad)
		}
	}
	// An embedded log must exist: a reader never creates one.
	if _, err := (engine.SourceSpec{Kind: engine.SourceEmbedded, Dir: dir}).Open(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("embedded source of a missing log: %v", err)
	}
	l, err := engine.Open(engine.Options{Dir: dir, Partitions: 2, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []engine.Record{{Key: []byte("1"), Value: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, spec := range []engine.SourceSpec{{Kind: engine.SourceEmbedded, Dir: dir}, {Kind: engine.SourceSegments, Dir: dir}} {
		src, err := spec.Open(ctx)
		if err != nil {
			t.Fatalf("%v: %v", spec, err)
		}
		if n, err := src.Partitions(ctx); err != nil || n != 2 || src.Topic() != "delivery_log" {
			t.Fatalf("%v: %d partitions, topic %s, %v", spec, n, src.Topic(), err)
		}
		src.Close()
	}
	if s := (engine.SourceSpec{Kind: engine.SourceKafka, Brokers: []string{"a:9092", "b:9092"}}).String(); s != "kafka=a:9092,b:9092" {
		t.Fatalf("String = %q", s)
	}
}
