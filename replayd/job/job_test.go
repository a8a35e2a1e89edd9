package job

import (
	"encoding/json"
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
