package receiver

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// EventIDOf reads the event id back from a body: the "id_str" of the first object of the first
// "*_events" array. ok is false when the body has none (a replay_job_status event, a user_event,
// or a payload of another producer).
func EventIDOf(body []byte) (string, bool) {
	// Fast path: the generator writes "id_str" first in the first event object.
	if i := bytes.Index(body, []byte(`_events":[{"id_str":"`)); i >= 0 {
		rest := body[i+len(`_events":[{"id_str":"`):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
			return string(rest[:j]), true
		}
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return "", false
	}
	best := ""
	for k, v := range top {
		if !strings.HasSuffix(k, "_events") || (best != "" && k > best) {
			continue
		}
		var arr []struct {
			IDStr *string `json:"id_str"`
		}
		if json.Unmarshal(v, &arr) == nil && len(arr) > 0 && arr[0].IDStr != nil {
			best = k
			top[""] = json.RawMessage(strconv.Quote(*arr[0].IDStr))
		}
	}
	if best == "" {
		return "", false
	}
	s, _ := strconv.Unquote(string(top[""]))
	return s, true
}
