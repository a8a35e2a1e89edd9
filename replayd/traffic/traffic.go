// Package traffic generates realistic delivery_log traffic: Account Activity payloads of the
// usual event types and sizes, spread over webhooks with a Zipf skew, over a time span ending at
// a given instant, with timestamp jitter (out-of-order records) and re-produced duplicates that
// keep their event id, as at-least-once producers and cross-datacenter mirroring make them.
//
// A Generator is deterministic: the same Config (Seed included) yields the same events.
package traffic

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EventIDHeader is the record header carrying the event id (the dedup identity replayd uses).
const EventIDHeader = "event-id"

// Types are the event types the generator can produce, the arrays of an Account Activity
// payload.
var Types = []string{
	"tweet_create_events", "favorite_events", "follow_events", "block_events", "mute_events",
	"direct_message_events", "direct_message_indicate_typing_events", "direct_message_mark_read_events",
	"tweet_delete_events",
}

// DefaultMix is the event-type mix used when Config.Mix is empty: weights, not percentages.
// tweet_delete_events is left out because its payloads are far smaller than the others (~250 B).
var DefaultMix = map[string]float64{
	"tweet_create_events":                   35,
	"favorite_events":                       30,
	"follow_events":                         10,
	"direct_message_events":                 12,
	"direct_message_indicate_typing_events": 5,
	"direct_message_mark_read_events":       4,
	"block_events":                          2,
	"mute_events":                           2,
}

// Config says what to generate.
type Config struct {
	Events     int                // records to generate, duplicates included
	WebhookIDs []string           // decimal webhook ids, hottest first (Zipf rank order)
	Skew       float64            // Zipf exponent s ≥ 0: webhook k (0-based) is chosen ∝ 1/(k+1)^s; 0 is uniform
	Mix        map[string]float64 // event-type weights; empty means DefaultMix
	DupRate    float64            // fraction of records that re-produce an earlier event, in [0, 1)
	Jitter     time.Duration      // a record's timestamp is up to this much earlier than its place in the sequence
	Span       time.Duration      // timestamps lie in [End-Span, End)
	End        time.Time          // the end of the span (exclusive); zero means now
	Seed       uint64
	ForUserID  string // the payloads' for_user_id; default "2244994945"
}

// Event is one generated record.
type Event struct {
	Webhook   int    // index into Config.WebhookIDs
	ID        uint64 // event id: the first event object's "id_str" and the event-id header
	Timestamp int64  // CreateTime, ms
	Duplicate bool   // a re-production of an earlier event (same id, body, timestamp, webhook)
	Type      string
	Body      []byte
}

// dupWindow is how many recent unique events a duplicate may re-produce: retries and mirror lag
// repeat recent events, not arbitrary old ones.
const dupWindow = 4096

// Generator produces the events of a Config, in production order.
type Generator struct {
	cfg     Config
	rng     *rand.Rand
	cdf     []float64 // Zipf cumulative weights
	types   []string
	typeCDF []float64
	start   int64
	spanMS  int64
	idBase  uint64
	i       int // records generated
	unique  uint64
	recent  []Event // ring of recent unique events
	users   []user  // a pool of users the payloads mention
}

// IDBase is the first event id a seed's events use: ids are IDBase(seed)+n for the n-th unique
// event, so runs with different seeds do not reuse each other's ids (up to 10^11 events a run).
func IDBase(seed uint64) uint64 { return 1_000_000_000_000_000_000 + (seed%80_000_000)*100_000_000_000 }

// New checks cfg and returns a generator for it.
func New(cfg Config) (*Generator, error) {
	if cfg.End.IsZero() {
		cfg.End = time.Now()
	}
	if cfg.ForUserID == "" {
		cfg.ForUserID = "2244994945"
	}
	if len(cfg.Mix) == 0 {
		cfg.Mix = DefaultMix
	}
	var errs []error
	if cfg.Events < 0 {
		errs = append(errs, fmt.Errorf("events %d is negative", cfg.Events))
	}
	if len(cfg.WebhookIDs) == 0 {
		errs = append(errs, errors.New("no webhooks"))
	}
	for _, id := range cfg.WebhookIDs {
		if _, err := strconv.ParseUint(id, 10, 63); err != nil {
			errs = append(errs, fmt.Errorf("webhook id %q is not a decimal id", id))
		}
	}
	if cfg.Skew < 0 || math.IsNaN(cfg.Skew) || math.IsInf(cfg.Skew, 0) {
		errs = append(errs, fmt.Errorf("skew %v: want a finite exponent ≥ 0", cfg.Skew))
	}
	if !(cfg.DupRate >= 0 && cfg.DupRate < 1) {
		errs = append(errs, fmt.Errorf("duplicate rate %v is outside [0, 1)", cfg.DupRate))
	}
	if cfg.Jitter < 0 {
		errs = append(errs, fmt.Errorf("jitter %v is negative", cfg.Jitter))
	}
	if cfg.Span < time.Millisecond {
		errs = append(errs, fmt.Errorf("span %v is shorter than 1ms", cfg.Span))
	}
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6c6f616467656e)), idBase: IDBase(cfg.Seed)}
	names := make([]string, 0, len(cfg.Mix))
	for t := range cfg.Mix {
		names = append(names, t)
	}
	sort.Strings(names)
	total := 0.0
	for _, t := range names {
		w := cfg.Mix[t]
		if !knownType(t) {
			errs = append(errs, fmt.Errorf("unknown event type %q (known: %s)", t, strings.Join(Types, ", ")))
			continue
		}
		if !(w >= 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("event type %s: weight %v is not ≥ 0", t, w))
			continue
		}
		if w == 0 {
			continue
		}
		total += w
		g.types = append(g.types, t)
		g.typeCDF = append(g.typeCDF, total)
	}
	if len(g.types) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("event-type mix has no positive weight"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	g.cdf = make([]float64, len(cfg.WebhookIDs))
	sum := 0.0
	for k := range g.cdf {
		sum += math.Pow(float64(k+1), -cfg.Skew)
		g.cdf[k] = sum
	}
	g.spanMS = cfg.Span.Milliseconds()
	g.start = cfg.End.UnixMilli() - g.spanMS
	g.users = make([]user, 512)
	for i := range g.users {
		g.users[i] = g.newUser()
	}
	return g, nil
}

func knownType(t string) bool {
	for _, k := range Types {
		if k == t {
			return true
		}
	}
	return false
}

// Config is the generator's configuration, defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Start and End bound the timestamps: every event's is in [Start, End), in ms.
func (g *Generator) Start() int64 { return g.start }
func (g *Generator) End() int64   { return g.start + g.spanMS }

// Share is the expected fraction of unique events webhook k receives.
func (g *Generator) Share(k int) float64 {
	prev := 0.0
	if k > 0 {
		prev = g.cdf[k-1]
	}
	return (g.cdf[k] - prev) / g.cdf[len(g.cdf)-1]
}

// Next returns the next event; ok is false once Config.Events have been generated. The event's
// Body is only valid until the following call's duplicate may share it: callers must not modify
// it.
func (g *Generator) Next() (Event, bool) {
	if g.i >= g.cfg.Events {
		return Event{}, false
	}
	i := g.i
	g.i++
	if len(g.recent) > 0 && g.cfg.DupRate > 0 && g.rng.Float64() < g.cfg.DupRate {
		n := min(len(g.recent), dupWindow)
		ev := g.recent[g.rng.IntN(n)]
		ev.Duplicate = true
		return ev, true
	}
	nominal := g.start + int64(float64(g.spanMS)*float64(i)/float64(g.cfg.Events))
	ts := nominal
	if g.cfg.Jitter > 0 {
		ts -= g.rng.Int64N(g.cfg.Jitter.Milliseconds() + 1)
		ts = max(ts, g.start)
	}
	ev := Event{
		Webhook:   g.pickWebhook(),
		ID:        g.idBase + g.unique,
		Timestamp: ts,
		Type:      g.pickType(),
	}
	g.unique++
	ev.Body = g.payload(ev.Type, ev.ID, ts)
	if len(g.recent) < dupWindow {
		g.recent = append(g.recent, ev)
	} else {
		g.recent[int(g.unique)%dupWindow] = ev
	}
	return ev, true
}

func (g *Generator) pickWebhook() int {
	u := g.rng.Float64() * g.cdf[len(g.cdf)-1]
	k := sort.SearchFloat64s(g.cdf, u)
	return min(k, len(g.cdf)-1)
}

func (g *Generator) pickType() string {
	u := g.rng.Float64() * g.typeCDF[len(g.typeCDF)-1]
	k := sort.SearchFloat64s(g.typeCDF, u)
	return g.types[min(k, len(g.types)-1)]
}

// ParseMix parses "tweet_create_events=35,favorite_events=30": event types and weights (a type
// may be named without its _events suffix).
func ParseMix(s string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want type=weight", part)
		}
		if !strings.HasSuffix(name, "_events") {
			name += "_events"
		}
		if !knownType(name) {
			return nil, fmt.Errorf("mix: unknown event type %q (known: %s)", name, strings.Join(Types, ", "))
		}
		f, err := strconv.ParseFloat(w, 64)
		if err != nil || f < 0 {
			return nil, fmt.Errorf("mix: weight of %s: %q is not a number ≥ 0", name, w)
		}
		m[name] = f
	}
	return m, nil
}
