package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index/indextest"
)

// TestIndexCommandsTwoTopics: rebuild, verify and stats of an index of the local and a mirrored
// topic (--topics; the mirrored embedded log beside the local one); an index of one topic is
// refused for two with a rebuild error, and topics of different partition counts are refused.
func TestIndexCommandsTwoTopics(t *testing.T) {
	data := t.TempDir()
	makeIndexData(t, data, 1) // delivery_log, 3 partitions
	mirror := engine.EmbeddedTopicDir(filepath.Join(data, "log"), "dc2.delivery_log")
	l, err := engine.Open(engine.Options{Dir: mirror, Topic: "dc2.delivery_log", Partitions: 3, MaxBatchBytes: 4 << 10, Retention: -1, Sync: engine.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	_, err = indextest.Generate(t.Context(), l, indextest.Spec{
		Events: 2000, Webhooks: 200, Start: time.Now().Add(-3 * time.Hour), Span: 2 * time.Hour, ValueSize: 300, Seed: 2,
	})
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "index", "rebuild", "--data", data) // one topic
	_, errOut, code := run(t, "index", "verify", "--data", data, "--topics", "delivery_log,dc2.delivery_log")
	if code == 0 || !strings.Contains(errOut, "rebuild") || !strings.Contains(errOut, "dc2.delivery_log") {
		t.Fatalf("verify of a one-topic index with two topics: exit %d, %s", code, errOut)
	}
	mustRun(t, "index", "rebuild", "--data", data, "--topics", "delivery_log,dc2.delivery_log")
	if out := mustRun(t, "index", "verify", "--data", data, "--topics", "delivery_log,dc2.delivery_log"); !strings.Contains(out, " 0 mismatches") {
		t.Fatalf("verify:\n%s", out)
	}
	out := mustRun(t, "index", "stats", "--data", data, "--topics", "delivery_log,dc2.delivery_log")
	for _, want := range []string{"topic partition", "mirror lag", "dc2.delivery_log", "newest event"} {
		if !strings.Contains(out, want) {
			t.Fatalf("stats lacks %q:\n%s", want, out)
		}
	}
	// Six rows: three partitions of each topic, the mirrored ones with their newest event.
	if n := strings.Count(out, "dc2.delivery_log  "); n < 3 {
		t.Errorf("stats lists %d rows of the mirrored topic:\n%s", n, out)
	}
	// Partition counts that differ are refused, naming both.
	l, err = engine.Open(engine.Options{Dir: engine.EmbeddedTopicDir(filepath.Join(data, "log"), "dc3.delivery_log"), Topic: "dc3.delivery_log", Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, errOut, code = run(t, "index", "rebuild", "--data", data, "--topics", "delivery_log,dc3.delivery_log")
	if code == 0 || !strings.Contains(errOut, "delivery_log has 3") || !strings.Contains(errOut, "dc3.delivery_log has 2") {
		t.Fatalf("rebuild over 3 and 2 partitions: exit %d, %s", code, errOut)
	}
	// --topic and --topics must agree on the local topic; a bad list is refused before anything
	// is opened.
	_, errOut, code = run(t, "index", "verify", "--data", data, "--topic", "other", "--topics", "delivery_log,dc2.delivery_log")
	if code == 0 || !strings.Contains(errOut, "different local topics") {
		t.Fatalf("--topic other --topics delivery_log,...: exit %d, %s", code, errOut)
	}
	_, errOut, code = run(t, "index", "verify", "--data", data, "--topics", "delivery_log,delivery_log")
	if code == 0 || !strings.Contains(errOut, "listed twice") {
		t.Fatalf("a topic listed twice: exit %d, %s", code, errOut)
	}
}
