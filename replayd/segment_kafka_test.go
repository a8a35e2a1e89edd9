package main

import (
	"bufio"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// dumpRecordLine is a record line of DumpLogSegments --deep-iteration --print-data-log.
var dumpRecordLine = regexp.MustCompile(`^\| offset: (\d+) CreateTime: (-?\d+) .* key: (.*?) payload: (.*)$`)

// TestSegmentDumpAgreesWithKafka: on the segments the embedded log writes, `replayd segment dump
// --json` lists the same records as Kafka's own DumpLogSegments (offset, timestamp, key, value).
func TestSegmentDumpAgreesWithKafka(t *testing.T) {
	dir := t.TempDir()
	l, err := engine.Open(engine.Options{Dir: dir, Partitions: 1, MaxBatchBytes: 2048, SegmentBytes: 4 << 10, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	var recs []engine.Record
	for i := range 600 {
		recs = append(recs, engine.Record{Key: []byte(strconv.Itoa(1000 + i%7)), Value: []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%90))),
			Timestamp: 1_700_000_000_000 + int64(i)*1000, Headers: []segment.Header{{Key: []byte("event-id"), Value: []byte(strconv.Itoa(i))}}})
	}
	for i := 0; i < len(recs); i += 40 {
		if _, err := l.Append(t.Context(), recs[i:min(i+40, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pdir := filepath.Join(dir, "delivery_log-0")
	logs, _ := filepath.Glob(filepath.Join(pdir, "*.log"))
	if len(logs) < 3 {
		t.Fatalf("%d segments, want several", len(logs))
	}
	stdout, stderr, err := kafkatest.RunTool(t.Context(), nil, kafkatest.MainDumpLogSegments,
		append([]string{"--deep-iteration", "--print-data-log", "--files"}, strings.Join(logs, ","))...)
	if err != nil {
		t.Fatalf("DumpLogSegments: %v\n%s", err, stderr)
	}
	type rec struct {
		offset, ts int64
		key, value string
	}
	var theirs []rec
	sc := bufio.NewScanner(strings.NewReader(string(stdout)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := dumpRecordLine.FindStringSubmatch(sc.Text()); m != nil {
			off, _ := strconv.ParseInt(m[1], 10, 64)
			ts, _ := strconv.ParseInt(m[2], 10, 64)
			theirs = append(theirs, rec{off, ts, m[3], m[4]})
		}
	}
	out, errOut, code := run(t, "segment", "dump", "--json", pdir)
	if code != 0 {
		t.Fatalf("replayd segment dump: exit %d: %s", code, errOut)
	}
	ours := parseJSONLines(t, out)
	if len(theirs) != len(recs) || len(ours) != len(theirs) {
		t.Fatalf("DumpLogSegments listed %d records, replayd segment dump %d, we wrote %d", len(theirs), len(ours), len(recs))
	}
	for i, o := range ours {
		th := theirs[i]
		if o.Key == nil || o.Value == nil || o.Offset != th.offset || o.Timestamp != th.ts || *o.Key != th.key || *o.Value != th.value {
			t.Fatalf("record %d: replayd segment dump %+v (key %v value %v), DumpLogSegments %+v", i, o, o.Key, o.Value, th)
		}
	}
	t.Logf("DumpLogSegments and replayd segment dump list the same %d records of %d segments", len(ours), len(logs))
}
