package job

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestStateStringParse(t *testing.T) {
	for _, s := range AllStates {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseState(%q) = %v, %v", s, got, err)
		}
	}
	if s, err := ParseState("ongoing"); err != nil || s != StateOngoing {
		t.Fatalf("case-insensitive parse: %v %v", s, err)
	}
	if _, err := ParseState("RUNNING"); err == nil {
		t.Fatal("ParseState accepted RUNNING")
	}
	if State(0).String() != "State(0)" || State(0).Valid() {
		t.Fatal("zero state")
	}
	b, err := json.Marshal(Job{ID: 1095098195724595200, State: StateCanceled})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		ID    string `json:"job_id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.ID != "1095098195724595200" || back.State != "CANCELED" {
		t.Fatalf("JSON %s -> %+v %v", b, back, err)
	}
}

func TestTopicsEncodeDecode(t *testing.T) {
	ts := []TopicProgress{{Topic: "delivery_log", Checkpoint: 41, Read: 3, Delivered: 2, DuplicatesDropped: 1}, {Topic: "dc2.delivery_log", Checkpoint: NoCheckpoint}}
	back, err := DecodeTopics(EncodeTopics(ts))
	if err != nil || len(back) != 2 || back[0] != ts[0] || back[1] != ts[1] {
		t.Fatalf("round trip: %v, %v", back, err)
	}
	if b := EncodeTopics(nil); b != nil {
		t.Fatalf("EncodeTopics(nil) = %q", b)
	}
	for in, want := range map[string]string{
		`{`:                                "topic progress",
		`[{"topic":"","checkpoint":1}]`:    "name",
		`[{"topic":"a"},{"topic":"a"}]`:    "listed twice",
		`[{"topic":"a","checkpoint":-2}]`:  "checkpoint -2",
		`[{"topic":"a","read":-1}]`:        "negative",
		`[{"topic":"a","checkpoint":"x"}]`: "topic progress",
		`[{"topic":"a"},{"topic":"b"},{"topic":"c"},{"topic":"d"},{"topic":"e"},{"topic":"f"},{"topic":"g"},{"topic":"h"},{"topic":"i"},{"topic":"j"},{"topic":"k"},{"topic":"l"},{"topic":"m"},{"topic":"n"},{"topic":"o"},{"topic":"p"},{"topic":"q"}]`: "at most 16",
	} {
		if _, err := DecodeTopics([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeTopics(%s) = %v, want an error saying %q", in, err, want)
		}
	}
	j := Job{Checkpoint: 7}
	if j.TopicCheckpoint(0, "delivery_log") != 7 || j.TopicCheckpoint(1, "dc2.delivery_log") != NoCheckpoint {
		t.Error("a job without topic progress resumes its first topic from Checkpoint")
	}
	j.Topics = ts
	if j.TopicCheckpoint(0, "delivery_log") != 41 || j.TopicCheckpoint(1, "dc2.delivery_log") != NoCheckpoint || j.TopicCheckpoint(2, "dc3.delivery_log") != NoCheckpoint {
		t.Error("a job with topic progress resumes each topic from its own checkpoint")
	}
	if err := (HeartbeatParams{ID: 1, FencingToken: 1, Progress: &Progress{Topics: []TopicProgress{{Topic: "a"}, {Topic: "a"}}}}).Validate(); err == nil {
		t.Error("a heartbeat with a topic twice was accepted")
	}
}

// FuzzDecodeTopics: the stored topic progress is outside bytes (a database column): any input
// decodes to a valid list or an error, never a panic, and a valid list round-trips.
func FuzzDecodeTopics(f *testing.F) {
	f.Add([]byte(`[{"topic":"delivery_log","checkpoint":41,"read":3,"delivered":2,"duplicates_dropped":1}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"topic":"a"},{"topic":"a"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := DecodeTopics(b)
		if err != nil {
			return
		}
		if err := ValidateTopics(ts); err != nil {
			t.Fatalf("decoded an invalid list: %v", err)
		}
		back, err := DecodeTopics(EncodeTopics(ts))
		if err != nil || len(back) != len(ts) {
			t.Fatalf("round trip of %v: %v, %v", ts, back, err)
		}
		for i := range ts {
			if back[i] != ts[i] {
				t.Fatalf("round trip of %v: %v", ts, back)
			}
		}
	})
}
