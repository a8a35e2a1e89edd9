package segment

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var updateSample = flag.Bool("update-sample", false, "rewrite testdata/sample from the generator")

const sampleDir = "testdata/sample/delivery_log-0"

// sampleRecords is the content of the shipped sample partition: Account Activity payloads for
// three webhooks, with event-id headers, a re-produced duplicate and timestamps out of order.
func sampleRecords() []testRecord {
	rng := rand.New(rand.NewPCG(2026, 11))
	webhooks := []string{"1095098195724595200", "1095098195724595201", "1276456392181764096"}
	users := []string{"2244994945", "783214", "6253282"}
	kinds := []string{"tweet_create_events", "favorite_events", "follow_events", "direct_message_events"}
	var recs []testRecord
	ts := int64(1_763_800_000_000) // 2025-11-22T08:26:40Z
	for i := 0; i < 120; i++ {
		w := rng.IntN(len(webhooks))
		ts += 500 + rng.Int64N(1500)
		eventTS := ts - rng.Int64N(3000) // producers' clocks and retries put events out of order
		id := fmt.Sprintf("%d", 1_461_000_000_000_000_000+int64(i)*7919)
		kind := kinds[rng.IntN(len(kinds))]
		body := fmt.Sprintf(`{"for_user_id":%q,%q:[{"id":%q,"created_timestamp":"%d","text":"sample event %d for webhook %s"}]}`,
			users[w], kind, id, eventTS, i, webhooks[w])
		r := testRecord{ts: eventTS, key: []byte(webhooks[w]), value: []byte(body),
			headers: []Header{{Key: []byte("event-id"), Value: []byte(id)}}}
		recs = append(recs, r)
		if i%37 == 5 {
			recs = append(recs, r) // an at-least-once producer's retry
		}
	}
	return recs
}

func TestSamplePartition(t *testing.T) {
	recs := sampleRecords()
	const firstSegment = 70
	if *updateSample {
		if err := os.RemoveAll(sampleDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(sampleDir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeSegment(t, vfs.Default, sampleDir, 0, recs[:firstSegment], 10, CodecSnappy, 1024)
		writeSegment(t, vfs.Default, sampleDir, firstSegment, recs[firstSegment:], 10, CodecSnappy, 1024)
	}
	var got []Record
	for _, base := range []int64{0, firstSegment} {
		if err := CheckSegment(vfs.Default, sampleDir, base); err != nil {
			t.Fatal(err)
		}
		got = append(got, readAll(t, vfs.Default, sampleDir, base)...)
	}
	if len(got) != len(recs) {
		t.Fatalf("sample holds %d records, the generator makes %d (run go test -run TestSamplePartition -update-sample ./segment)", len(got), len(recs))
	}
	for i, r := range got {
		if r.Offset != int64(i) || r.Timestamp != recs[i].ts || !bytes.Equal(r.Key, recs[i].key) || !bytes.Equal(r.Value, recs[i].value) {
			t.Fatalf("sample record %d differs from the generator's", i)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(sampleDir, "*"))
	if len(matches) != 6 {
		t.Fatalf("sample directory holds %v, want two segments of three files each", matches)
	}
}
