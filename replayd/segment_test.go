package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata golden files")

const fixtures = "../../shared/fixtures/kafka-0.8-segments"

// run executes replayd with args in-process and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := 0
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else {
			errOut.WriteString(err.Error())
			code = 1
		}
	}
	return out.String(), errOut.String(), code
}

type dumpedRecord struct {
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       *string           `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers"`
}

func parseJSONLines(t *testing.T, s string) []dumpedRecord {
	t.Helper()
	var recs []dumpedRecord
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r dumpedRecord
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("stdout line %q is not a record object: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// The real Kafka 0.8 broker files: --json must reproduce each golden file's offsets and values.
func TestSegmentDumpKafka08Fixtures(t *testing.T) {
	for _, name := range []string{"hamlet-gzip-0", "hamlet-none-0", "numbers-0"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fixtures, name)
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("fixture missing (the shared directory must sit beside the project): %v", err)
			}
			stdout, stderr, code := run(t, "segment", "dump", "--json", dir)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			got := parseJSONLines(t, stdout)
			golden, err := os.ReadFile(dir + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(golden), "\n"), "\n")
			if len(got) != len(lines) {
				t.Fatalf("dumped %d records, golden has %d", len(got), len(lines))
			}
			for i, line := range lines {
				offText, valText, ok := strings.Cut(line, ": ")
				if !ok {
					t.Fatalf("golden line %d %q is not `offset: value`", i, line)
				}
				off, err := strconv.ParseInt(offText, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				var val string
				if err := json.Unmarshal([]byte(valText), &val); err != nil {
					t.Fatal(err)
				}
				if got[i].Offset != off || got[i].Value == nil || *got[i].Value != val || got[i].Key != nil {
					t.Fatalf("record %d: got offset %d value %v key %v, golden %d %q null", i, got[i].Offset, got[i].Value, got[i].Key, off, val)
				}
			}
		})
	}
}

// The human-readable dump of the shipped sample, compared with testdata (go test -args -update).
func TestSegmentDumpSampleGolden(t *testing.T) {
	stdout, stderr, code := run(t, "segment", "dump", "--records", "../segment/testdata/sample/delivery_log-0")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	golden := "testdata/dump-sample.txt"
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Fatalf("dump differs from %s; got:\n%s", golden, stdout)
	}
	// Two segments, in offset order, and every batch's CRC valid.
	if strings.Count(stdout, "Dumping ") != 2 || strings.Index(stdout, "00000000000000000000.log") > strings.Index(stdout, "00000000000000000070.log") {
		t.Fatal("segments not dumped in offset order")
	}
	if strings.Contains(stdout, "isvalid: false") {
		t.Fatal("a batch of the sample has a bad CRC")
	}
}

func TestSegmentDumpJSONSample(t *testing.T) {
	stdout, _, code := run(t, "segment", "dump", "--json", "../segment/testdata/sample/delivery_log-0")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	recs := parseJSONLines(t, stdout)
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	for i, r := range recs {
		if r.Offset != int64(i) || r.Key == nil || r.Headers["event-id"] == "" || !json.Valid([]byte(*r.Value)) {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
}

// A corrupt file: what could be read goes to stdout, then an error naming file and position on
// stderr, and exit status 1.
func TestSegmentDumpCorrupt(t *testing.T) {
	src := "../segment/testdata/sample/delivery_log-0/00000000000000000000.log"
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	full, _, _ := run(t, "segment", "dump", "--json", src)
	all := parseJSONLines(t, full)

	t.Run("torn tail", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "00000000000000000000.log")
		if err := os.WriteFile(path, data[:len(data)-10], 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := run(t, "segment", "dump", "--json", path)
		got := parseJSONLines(t, stdout)
		if code != 1 || len(got) == 0 || len(got) >= len(all) {
			t.Fatalf("exit %d with %d of %d records", code, len(got), len(all))
		}
		if !strings.Contains(stderr, path) || !strings.Contains(stderr, "torn tail at byte ") {
			t.Fatalf("stderr %q does not name the file and position", stderr)
		}
	})
	t.Run("bit flip", func(t *testing.T) {
		bad := bytes.Clone(data)
		bad[100] ^= 0x10 // inside the first batch's records
		path := filepath.Join(t.TempDir(), "00000000000000000000.log")
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := run(t, "segment", "dump", path)
		if code != 1 || !strings.Contains(stdout, "position: 0 ") || !strings.Contains(stdout, "isvalid: false") {
			t.Fatalf("exit %d, stdout:\n%s", code, stdout)
		}
		if !strings.Contains(stderr, path+": checksum mismatch at byte 0") {
			t.Fatalf("stderr %q does not name the file and position", stderr)
		}
		// The batches after the bad one are still listed.
		if strings.Count(stdout, "isvalid: true") == 0 {
			t.Fatal("batches after the corrupt one were not dumped")
		}
	})
	t.Run("not a segment directory", func(t *testing.T) {
		_, stderr, code := run(t, "segment", "dump", t.TempDir())
		if code != 1 || !strings.Contains(stderr, "no segment files") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}
