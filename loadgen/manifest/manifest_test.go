package manifest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func webhooks(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(1_095_000_000 + i)
	}
	return out
}

// sample is traffic shaped like loadgen's: sequential ids, about 1% duplicates of recent ones,
// timestamps advancing ~40ms per record with up to 2 minutes of jitter.
func sample(n int, seed uint64) []Entry {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out, uniques []Entry
	id := uint64(1_000_000_000_000_000_000)
	start := int64(1_760_000_000_000)
	for i := 0; i < n; i++ {
		if len(uniques) > 0 && rng.IntN(100) == 0 {
			e := uniques[len(uniques)-1-rng.IntN(min(len(uniques), 4096))]
			e.Duplicate = true
			out = append(out, e)
			continue
		}
		ts := start + int64(i)*43 - rng.Int64N(120_001)
		out = append(out, Entry{Webhook: uint32(rng.IntN(1000)), ID: id, Timestamp: ts})
		uniques = append(uniques, out[len(out)-1])
		id++
	}
	return out
}

func write(t testing.TB, h Header, es []Entry) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Bytes() != int64(buf.Len()) {
		t.Fatalf("Bytes() = %d, wrote %d", w.Bytes(), buf.Len())
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	h := Header{Seed: 7, Events: 200000, StartMS: 1, EndMS: 2, Skew: 1.1, DupRate: 0.01, JitterMS: 120000, Webhooks: webhooks(1000), Target: "embedded:x"}
	es := sample(200000, 7)
	// Edge cases: id and timestamp jumps both ways, the last webhook.
	es = append(es, Entry{Webhook: 999, ID: 1, Timestamp: -5}, Entry{Webhook: 0, ID: 1<<63 + 5, Timestamp: 1 << 50}, Entry{Webhook: 3, ID: 2, Timestamp: 0, Duplicate: true})
	b := write(t, h, es)
	gh, got, err := ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if gh.Seed != 7 || gh.Version != 1 || len(gh.Webhooks) != 1000 || gh.Webhooks[999] != h.Webhooks[999] || gh.Target != h.Target || gh.CreatedAt.IsZero() {
		t.Fatalf("header %+v", gh)
	}
	if len(got) != len(es) {
		t.Fatalf("read %d entries, wrote %d", len(got), len(es))
	}
	for i := range es {
		if got[i] != es[i] {
			t.Fatalf("entry %d: read %+v, wrote %+v", i, got[i], es[i])
		}
	}
}

// The format's size on realistic traffic: well under 10 bytes per record.
func TestBytesPerEvent(t *testing.T) {
	const n = 500000
	b := write(t, Header{Webhooks: webhooks(1000)}, sample(n, 3))
	per := float64(len(b)) / n
	t.Logf("manifest: %d records in %d bytes: %.2f bytes/record", n, len(b), per)
	if per > 6 {
		t.Fatalf("%.2f bytes/record", per)
	}
}

func TestErrors(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWriter(&buf, Header{}); err == nil {
		t.Fatal("a manifest without webhooks was accepted")
	}
	w, _ := NewWriter(&buf, Header{Webhooks: webhooks(2)})
	if err := w.Add(Entry{Webhook: 2}); err == nil {
		t.Fatal("webhook index out of range accepted")
	}
	w.Close()

	full := write(t, Header{Webhooks: webhooks(3)}, sample(1000, 1)[:0])
	if _, es, err := ReadAll(bytes.NewReader(full)); err != nil || len(es) != 0 {
		t.Fatalf("empty manifest: %v %d", err, len(es))
	}
	good := write(t, Header{Webhooks: webhooks(1000)}, sample(5000, 1))
	// A stream cut short: truncated, with the entries read so far.
	var zw bytes.Buffer
	mw, _ := NewWriter(&zw, Header{Webhooks: webhooks(1000)})
	for _, e := range sample(5000, 1) {
		mw.Add(e)
	}
	mw.w.Flush()
	mw.z.Close() // the zstd stream ends properly but without the end marker
	_, es, err := ReadAll(bytes.NewReader(zw.Bytes()))
	if !errors.Is(err, ErrTruncated) || len(es) != 5000 {
		t.Fatalf("no end marker: %v after %d entries", err, len(es))
	}
	for _, bad := range [][]byte{nil, []byte("LGMANIF"), []byte("NOTAMANIFEST"), append([]byte(Magic), 1, 2, 3), good[:len(good)/2]} {
		if _, _, err := ReadAll(bytes.NewReader(bad)); err == nil {
			t.Errorf("%q... was read without error", bad[:min(len(bad), 12)])
		}
	}
	r, err := NewReader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after the end: %v", err)
	}
}

// FuzzReader feeds the decoder outside bytes: it must return an error or entries, never panic or
// run away.
func FuzzReader(f *testing.F) {
	f.Add(write(f, Header{Webhooks: webhooks(3)}, nil))
	f.Add(write(f, Header{Webhooks: webhooks(1000), Seed: 1}, sample(50, 2)))
	f.Add([]byte(Magic))
	f.Add([]byte("LGMANIF1\x28\xb5\x2f\xfd"))
	f.Add(write(f, Header{Webhooks: webhooks(1000), DCs: []string{"dc1", "dc2"}}, twoDC(sample(40, 3))))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		defer r.Close()
		h := r.Header()
		for i := 0; i < 1<<20; i++ {
			e, err := r.Next()
			if err != nil {
				return
			}
			if int(e.Webhook) >= len(h.Webhooks) {
				t.Fatalf("entry names webhook %d of %d", e.Webhook, len(h.Webhooks))
			}
			if int(e.DC) >= max(len(h.DCs), 1) {
				t.Fatalf("entry names datacenter %d of %d", e.DC, len(h.DCs))
			}
		}
	})
}

// twoDC spreads es over two datacenters, every third one copied into the other (a cross-DC
// duplicate).
func twoDC(es []Entry) []Entry {
	var out []Entry
	for i, e := range es {
		e.DC = uint8(i % 2)
		out = append(out, e)
		if i%3 == 0 {
			c := e
			c.DC, c.Duplicate = 1-e.DC, true
			out = append(out, c)
		}
	}
	return out
}

// TestTwoDCs: a run into two datacenters is version 2 and keeps each record's datacenter; a
// datacenter out of range is refused by the writer, and a header that contradicts its version
// by the reader.
func TestTwoDCs(t *testing.T) {
	es := twoDC(sample(3000, 5))
	for i := range es {
		es[i].Webhook %= 7
	}
	b := write(t, Header{Webhooks: webhooks(7), DCs: []string{"delivery_log", "dc2.delivery_log"}, CrossDCRate: 0.33}, es)
	h, got, err := ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 2 || len(h.DCs) != 2 || h.CrossDCRate != 0.33 {
		t.Fatalf("header %+v", h)
	}
	if len(got) != len(es) {
		t.Fatalf("read %d entries, wrote %d", len(got), len(es))
	}
	for i := range es {
		if got[i] != es[i] {
			t.Fatalf("entry %d: %+v, wrote %+v", i, got[i], es[i])
		}
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Webhooks: webhooks(2), DCs: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(Entry{Webhook: 1, ID: 1, DC: 2}); err == nil || !strings.Contains(err.Error(), "datacenter 2 of 2") {
		t.Fatalf("Add of datacenter 2: %v", err)
	}
	// One datacenter is version 1, as before.
	h, _, err = ReadAll(bytes.NewReader(write(t, Header{Webhooks: webhooks(2), DCs: []string{"only"}}, nil)))
	if err != nil || h.Version != 1 || h.DCs != nil {
		t.Fatalf("one datacenter: %+v, %v", h, err)
	}
}
