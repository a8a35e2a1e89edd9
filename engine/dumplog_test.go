package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/engine/enginetest"
	"github.com/replay/replay/engine/kafkatest"
	"github.com/replay/replay/segment"
)

// writeKafkaLog writes an embedded log of topic delivery_log with parts partitions into dir:
// small segments (several per partition, several index entries per segment), records appended
// through Log.Append (snappy batches cut by the log) and raw batches of every other codec, with
// keys, headers (none, one, two), a null value and timestamps that go backwards.
func writeKafkaLog(t *testing.T, dir string, parts int32) {
	t.Helper()
	l, err := engine.Open(engine.Options{Dir: dir, Topic: "delivery_log", Partitions: parts, SegmentBytes: 16 << 10, IndexIntervalBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ts := int64(1_763_800_000_000)
	n := 0
	record := func() engine.Record {
		n++
		ts += int64(n*37%1000) - 300
		r := engine.Record{
			Key:       []byte(strconv.Itoa(1095098195724595200 + n%11)),
			Value:     []byte(fmt.Sprintf(`{"for_user_id":"%d","favorite_events":[{"id":"%d","text":"%s"}]}`, n*7919, n, noise(n))),
			Timestamp: ts,
		}
		switch n % 3 {
		case 1:
			r.Headers = []segment.Header{{Key: []byte("event-id"), Value: []byte(strconv.Itoa(n))}}
		case 2:
			r.Headers = []segment.Header{{Key: []byte("event-id"), Value: []byte(strconv.Itoa(n))}, {Key: []byte("origin"), Value: []byte("dc1")}}
		}
		if n%97 == 0 {
			r.Value = nil
		}
		return r
	}
	codecs := []segment.Codec{segment.CodecNone, segment.CodecGzip, segment.CodecLZ4, segment.CodecZstd, segment.CodecSnappy}
	for round := 0; round < 12; round++ {
		var recs []engine.Record
		for i := 0; i < 40; i++ {
			recs = append(recs, record())
		}
		if _, err := l.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < parts; p++ {
			b := enginetest.Batch{Codec: codecs[(round+int(p))%len(codecs)]}
			for i := 0; i < 1+round%5; i++ {
				r := record()
				b.Records = append(b.Records, enginetest.Record{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers})
			}
			if _, err := l.AppendBatches(ctx, p, enginetest.Encode(t, b, 0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// noise is up to ~600 bytes of text that compresses poorly.
func noise(n int) string {
	var b strings.Builder
	x := uint64(n)*0x9e3779b97f4a7c15 + 1
	for i := 0; i < n%600; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b.WriteByte('a' + byte(x%26))
	}
	return b.String()
}

// segmentFiles are the .log files of a partition directory in offset order.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs []string
	for _, e := range ents {
		if _, ext, ok := segment.ParseFileName(e.Name()); ok && ext == segment.LogExt {
			logs = append(logs, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(logs)
	return logs
}

// dumpedBatch and dumpedRecord are what DumpLogSegments --deep-iteration --print-data-log prints.
type dumpedBatch struct {
	line                         string
	base, last, count, pos, size int64
	crc                          uint32
	codec                        string
	valid                        bool
	records                      []dumpedRecord
	producerID, producerEpoch    int64
	baseSequence, leaderEpoch    int64
	transactional, control       bool
	maxTimestamp                 int64
}

type dumpedRecord struct {
	line       string
	offset, ts int64
	key, value string
	headerKeys string
}

var (
	batchLine  = regexp.MustCompile(`^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) baseSequence: (-?\d+) lastSequence: -?\d+ producerId: (-?\d+) producerEpoch: (-?\d+) partitionLeaderEpoch: (-?\d+) isTransactional: (\w+) isControl: (\w+) deleteHorizonMs: \S+ position: (\d+) CreateTime: (-?\d+) size: (\d+) magic: 2 compresscodec: (\w+) crc: (\d+) isvalid: (\w+)$`)
	recordLine = regexp.MustCompile(`^\| offset: (\d+) CreateTime: (-?\d+) keySize: -?\d+ valueSize: -?\d+ sequence: -?\d+ headerKeys: \[(.*?)\] key: (.*?)(?: payload: (.*))?$`)
)

// parseDump splits DumpLogSegments' output into the batches of each file it dumped.
func parseDump(t *testing.T, out []byte) map[string][]dumpedBatch {
	t.Helper()
	files := map[string][]dumpedBatch{}
	var file string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	num := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("DumpLogSegments printed %q as a number", s)
		}
		return v
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Dumping "):
			file = strings.TrimPrefix(line, "Dumping ")
			files[file] = []dumpedBatch{}
		case strings.HasPrefix(line, "Log starting offset: "):
		case strings.HasPrefix(line, "baseOffset: "):
			m := batchLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("DumpLogSegments batch line not understood: %s", line)
			}
			files[file] = append(files[file], dumpedBatch{line: line,
				base: num(m[1]), last: num(m[2]), count: num(m[3]), baseSequence: num(m[4]),
				producerID: num(m[5]), producerEpoch: num(m[6]), leaderEpoch: num(m[7]),
				transactional: m[8] == "true", control: m[9] == "true",
				pos: num(m[10]), maxTimestamp: num(m[11]), size: num(m[12]), codec: m[13],
				crc: uint32(num(m[14])), valid: m[15] == "true"})
		case strings.HasPrefix(line, "| offset: "):
			m := recordLine.FindStringSubmatch(line)
			bs := files[file]
			if m == nil || len(bs) == 0 {
				t.Fatalf("DumpLogSegments record line not understood: %s", line)
			}
			b := &bs[len(bs)-1]
			value := m[5]
			if !strings.Contains(line, " payload: ") {
				value = "(null)" // a null value prints no payload
			}
			b.records = append(b.records, dumpedRecord{line: line, offset: num(m[1]), ts: num(m[2]), headerKeys: m[3], key: m[4], value: value})
		default:
			t.Fatalf("DumpLogSegments printed an unexpected line (file %s): %s", file, line)
		}
	}
	return files
}

// dumpProblems are the lines with which DumpLogSegments reports a bad file.
var dumpProblems = []string{"isvalid: false", "Mismatches in", "Non-consecutive offsets", "mismatch", "out of order",
	"not found in", "invalid bytes", "Error", "Exception", "Failed", "corrupt"}

func problems(out []byte) []string {
	var bad []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, p := range dumpProblems {
			if strings.Contains(line, p) {
				bad = append(bad, line)
				break
			}
		}
	}
	return bad
}

// TestDumpLogSegmentsJudgesEmbeddedLog runs Kafka's own DumpLogSegments over every segment and
// index the embedded log wrote: batches valid, indexes sane and pointing at the batches they
// name, and the records it lists are the ones our reader reads, field by field. A corrupted copy
// of a segment and of an index, dumped in the same runs, must be reported, so the checks can
// fail.
func TestDumpLogSegmentsJudgesEmbeddedLog(t *testing.T) {
	dir := t.TempDir()
	writeKafkaLog(t, dir, 2)
	var logs, indexes []string
	for p := 0; p < 2; p++ {
		ls := segmentFiles(t, filepath.Join(dir, fmt.Sprintf("delivery_log-%d", p)))
		if len(ls) < 3 {
			t.Fatalf("partition %d has %d segments; the test wants several", p, len(ls))
		}
		logs = append(logs, ls...)
		for _, l := range ls {
			base := strings.TrimSuffix(l, segment.LogExt)
			indexes = append(indexes, base+".index", base+".timeindex")
		}
	}

	// The negative controls: a segment with one payload byte flipped, an index entry pointing
	// at the wrong batch.
	bad := t.TempDir()
	badLog := filepath.Join(bad, filepath.Base(logs[0]))
	raw, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-3] ^= 0xff
	os.WriteFile(badLog, raw, 0o644)
	goodIndex := strings.TrimSuffix(logs[0], segment.LogExt) + ".index"
	idx, err := os.ReadFile(goodIndex)
	if err != nil || len(idx) < 16 {
		t.Fatalf("index %s: %d bytes, %v; want two entries or more", goodIndex, len(idx), err)
	}
	copy(idx[12:16], idx[4:8]) // entry 1 gets entry 0's position
	badIndex := filepath.Join(bad, filepath.Base(goodIndex))
	os.WriteFile(badIndex, idx, 0o644)
	os.WriteFile(strings.TrimSuffix(badIndex, ".index")+".timeindex", nil, 0o644)
	os.WriteFile(strings.TrimSuffix(badIndex, ".index")+segment.LogExt, raw, 0o644) // the index's segment (its last batch is bad too)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// run runs DumpLogSegments and returns its standard output (batches, records, index entries)
	// and standard error (the problems it found).
	run := func(args ...string) (stdout, stderr []byte) {
		t.Helper()
		stdout, stderr, err := kafkatest.RunTool(ctx, nil, kafkatest.MainDumpLogSegments, args...)
		if err != nil {
			t.Fatal(err)
		}
		return stdout, stderr
	}

	// Batches and records.
	out, errOut := run("--deep-iteration", "--print-data-log", "--files", strings.Join(append(logs, badLog), ","))
	for _, line := range problems(out) {
		if !strings.Contains(line, "isvalid: false") {
			t.Errorf("DumpLogSegments: %s", line)
		}
	}
	for _, p := range gaps(errOut) {
		t.Errorf("DumpLogSegments found offsets that do not follow each other: %s", p)
	}
	dumped := parseDump(t, out)
	if bs := dumped[badLog]; len(bs) == 0 || bs[len(bs)-1].valid {
		t.Errorf("DumpLogSegments found the corrupted batch of %s valid", badLog)
	}
	total := 0
	for _, l := range logs {
		total += compareDump(t, l, dumped[l])
	}
	t.Logf("DumpLogSegments read %d records in %d segments as we do", total, len(logs))

	// Indexes: the broker's start-up sanity check; then every entry against the segment (offset
	// index) or the batches' largest timestamps (time index), with --verify-index-only and in the
	// plain index dump, which also lists the entries.
	out, errOut = run("--index-sanity-check", "--files", strings.Join(indexes, ","))
	if p := problems(append(out, errOut...)); len(p) > 0 {
		t.Errorf("DumpLogSegments --index-sanity-check:\n%s", strings.Join(p, "\n"))
	}
	passed, empty := strings.Count(string(out), "passed sanity check."), strings.Count(string(out), ".index is empty.")
	if passed+empty != len(indexes) || passed < len(indexes)/2 {
		t.Errorf("%d of %d indexes passed the sanity check, %d are empty:\n%s", passed, len(indexes), empty, out)
	}
	for _, mode := range [][]string{{"--verify-index-only"}, nil} {
		out, errOut = run(append(mode, "--files", strings.Join(append(indexes, badIndex), ","))...)
		caught := false
		for _, line := range problems(append(out, errOut...)) {
			if strings.Contains(line, badIndex) {
				caught = true
			} else {
				t.Errorf("DumpLogSegments %v (index entries): %s", mode, line)
			}
		}
		if !caught {
			t.Errorf("DumpLogSegments %v found no mismatch in %s, whose second entry points at the first's batch", mode, badIndex)
		}
		if mode == nil {
			if entries := strings.Count(string(out), "\noffset: "); entries < len(indexes)/2 {
				t.Errorf("DumpLogSegments listed %d offset index entries in %d indexes", entries, len(indexes)/2)
			}
		}
	}
}

// gaps are the offset gaps DumpLogSegments --deep-iteration reports ("Non-consecutive offsets in
// FILE" then "  A is followed by B"), less the one it reports for every segment not based at 0:
// it starts each file expecting offset 0 ("-1 is followed by" the segment's base).
func gaps(stderr []byte) []string {
	var out []string
	file := ""
	for _, line := range strings.Split(string(stderr), "\n") {
		switch {
		case strings.HasPrefix(line, "Non-consecutive offsets in "):
			file = strings.TrimPrefix(line, "Non-consecutive offsets in ")
		case strings.HasPrefix(line, "  ") && strings.Contains(line, " is followed by "):
			var a, b int64
			fmt.Sscanf(strings.TrimSpace(line), "%d is followed by %d", &a, &b)
			base, _, _ := segment.ParseFileName(filepath.Base(file))
			if a == -1 && b == base {
				continue
			}
			out = append(out, file+": "+strings.TrimSpace(line))
		case strings.TrimSpace(line) != "":
			out = append(out, line)
		}
	}
	return out
}

// compareDump checks DumpLogSegments' listing of one segment against our reader's, and returns
// the number of records.
func compareDump(t *testing.T, path string, dumped []dumpedBatch) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	sc := segment.NewScanner(f, path, st.Size(), segment.ScanOptions{})
	var rr segment.RecordReader
	i, n := 0, 0
	for ; sc.Next(); i++ {
		b := sc.Batch()
		if i >= len(dumped) {
			t.Fatalf("%s: DumpLogSegments listed %d batches, we read more", path, len(dumped))
		}
		d := dumped[i]
		h := b.BatchHeader
		want := dumpedBatch{line: d.line, base: h.BaseOffset, last: h.LastOffset(), count: int64(h.NumRecords), pos: b.Pos,
			size: h.Size(), crc: h.CRC, codec: h.Codec().String(), valid: true, producerID: h.ProducerID,
			producerEpoch: int64(h.ProducerEpoch), baseSequence: int64(h.BaseSequence), leaderEpoch: int64(h.PartitionLeaderEpoch),
			transactional: h.IsTransactional(), control: h.IsControl(), maxTimestamp: h.MaxTimestamp, records: d.records}
		if fmt.Sprint(want) != fmt.Sprint(d) {
			t.Fatalf("%s batch %d:\nDumpLogSegments: %+v\nours:            %+v", path, i, d, want)
		}
		if err := rr.Reset(b); err != nil {
			t.Fatal(err)
		}
		j := 0
		for ; rr.Next(); j++ {
			r := rr.Record()
			if j >= len(d.records) {
				t.Fatalf("%s batch at %d: DumpLogSegments listed %d records, we read more", path, h.BaseOffset, len(d.records))
			}
			var keys []string
			for _, hd := range r.Headers {
				keys = append(keys, string(hd.Key))
			}
			value := "(null)"
			if r.Value != nil {
				value = string(r.Value)
			}
			got, exp := d.records[j], dumpedRecord{line: d.records[j].line, offset: r.Offset, ts: r.Timestamp,
				key: string(r.Key), value: value, headerKeys: strings.Join(keys, ",")}
			if got != exp {
				t.Fatalf("%s record %d:\nDumpLogSegments: %+v\nours:            %+v", path, r.Offset, got, exp)
			}
			n++
		}
		if err := rr.Err(); err != nil {
			t.Fatal(err)
		}
		if j != len(d.records) {
			t.Fatalf("%s batch at %d: DumpLogSegments listed %d records, we read %d", path, h.BaseOffset, len(d.records), j)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(dumped) {
		t.Fatalf("%s: DumpLogSegments listed %d batches, we read %d", path, len(dumped), i)
	}
	return n
}
