// Package verify proves, from a produce manifest and a sink's record, that a replay delivered
// exactly the unique events of one webhook in one window: nothing missing, nothing extra, nothing
// twice.
package verify

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/replay/replay/loadgen/manifest"
	"github.com/replay/replay/replayd/receiver"
)

// ParseTime reads a window bound: the API's YYYYMMDDhhmm (UTC) or RFC3339.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.ParseInLocation("200601021504", s, time.UTC); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want YYYYMMDDhhmm (UTC) or RFC3339", s)
	}
	return t, nil
}

// Options say what to verify.
type Options struct {
	Webhook string    // decimal webhook id
	From    time.Time // inclusive
	To      time.Time // exclusive
	// Path is the sink path the webhook's deliveries arrived on. Empty: the path where the
	// webhook's replay_job_status events arrived, else the only path in the record.
	Path string
	// Job restricts the deliveries to one job's: those on the path after the previous status
	// event there, up to the job's own. Empty: the last job whose status arrived on the path, or
	// every delivery on the path when none did.
	Job   string
	Limit int // how many ids of each kind to list; default 20
	// DCs, for a manifest of several datacenters, are the indexes of those whose topics the
	// replay read (the local one and the mirrored ones): an event is expected when one of them
	// holds it. Empty: all of them.
	DCs []int
}

// Missed is an event the replay should have delivered and did not.
type Missed struct {
	ID        uint64
	Timestamp int64
	DCs       uint32 // for several datacenters: the set (bit i: datacenter i) that got it
}

// Extra is an event delivered that should not have been, with why.
type Extra struct {
	ID     string
	Reason string // "webhook W", "at T, outside the window", "not in the manifest", …
}

// Dup is an event delivered more than once.
type Dup struct {
	ID     string
	Copies int
}

// Report is the outcome.
type Report struct {
	Webhook       string
	From, To      time.Time
	Path          string
	Job           *receiver.JobStats // the job whose deliveries were checked, when known
	Expected      int                // unique events of the webhook in the window
	Produced      int                // records of the webhook in the window, duplicates included
	Delivered     int                // deliveries checked (events, not the status event)
	Missing       int
	Extra         int
	Duplicated    int // events delivered more than once
	DupCopies     int // deliveries beyond the first of those events
	BadSignatures int
	NoEventID     int // deliveries whose body carried no event id
	MissingList   []Missed
	ExtraList     []Extra
	DupList       []Dup
	Notes         []string
	// For a manifest of several datacenters: their names, and how many expected events each
	// one alone got (OnlyIn) and how many more than one got (InSeveral).
	DCs       []string
	OnlyIn    []int
	InSeveral int
}

// OK says the replay delivered exactly the expected events, once each, all correctly signed.
func (r *Report) OK() bool {
	return r.Missing == 0 && r.Extra == 0 && r.Duplicated == 0 && r.BadSignatures == 0 && r.NoEventID == 0
}

// dcNames says which datacenters got an event (set: bit i for datacenter i), for several.
func (r *Report) dcNames(set uint32) string {
	if len(r.DCs) < 2 {
		return ""
	}
	var names []string
	for i, d := range r.DCs {
		if set&(1<<i) != 0 {
			names = append(names, d)
		}
	}
	return ", produced into " + strings.Join(names, " and ")
}

// Write prints the report.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "webhook %s, window [%s, %s), sink path %s\n", r.Webhook, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Path)
	if r.Job != nil {
		fmt.Fprintf(w, "job %s: %s (%s)\n", r.Job.JobID, r.Job.State, r.Job.Description)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "expected %d unique events (%d records produced in the window), delivered %d\n", r.Expected, r.Produced, r.Delivered)
	if len(r.DCs) > 1 {
		fmt.Fprintf(w, "datacenters:")
		for i, d := range r.DCs {
			fmt.Fprintf(w, " %d only in %s;", r.OnlyIn[i], d)
		}
		fmt.Fprintf(w, " %d in more than one\n", r.InSeveral)
	}
	fmt.Fprintf(w, "missing %d, extra %d, duplicated %d (%d extra copies), bad signatures %d, without event id %d\n",
		r.Missing, r.Extra, r.Duplicated, r.DupCopies, r.BadSignatures, r.NoEventID)
	if len(r.MissingList) > 0 {
		fmt.Fprintf(w, "missing (first %d of %d):\n", len(r.MissingList), r.Missing)
		for _, m := range r.MissingList {
			fmt.Fprintf(w, "  %d  at %s%s\n", m.ID, time.UnixMilli(m.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z"), r.dcNames(m.DCs))
		}
	}
	if len(r.ExtraList) > 0 {
		fmt.Fprintf(w, "extra (first %d of %d):\n", len(r.ExtraList), r.Extra)
		for _, e := range r.ExtraList {
			fmt.Fprintf(w, "  %s  %s\n", e.ID, e.Reason)
		}
	}
	if len(r.DupList) > 0 {
		fmt.Fprintf(w, "duplicated (first %d of %d):\n", len(r.DupList), r.Duplicated)
		for _, d := range r.DupList {
			fmt.Fprintf(w, "  %s  delivered %d times\n", d.ID, d.Copies)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "OK: exactly the window's unique events were delivered, once each")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}

// ReadRecord reads a sink record file (JSON lines of receiver.Delivery). A torn last line (a sink
// still writing) is ignored.
func ReadRecord(r io.Reader) ([]receiver.Delivery, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var out []receiver.Delivery
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var d receiver.Delivery
			if jerr := json.Unmarshal(line, &d); jerr != nil {
				return out, fmt.Errorf("record line %d: %w", n, jerr)
			}
			d.Body = nil
			out = append(out, d)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// selectDeliveries picks the webhook's path and the job's deliveries.
func selectDeliveries(o *Options, rec []receiver.Delivery, r *Report) ([]receiver.Delivery, error) {
	path := o.Path
	if path == "" {
		paths := map[string]bool{}
		for _, d := range rec {
			if d.Status != nil && d.Status.WebhookID == o.Webhook {
				paths[d.Path] = true
			}
		}
		if len(paths) == 0 {
			for _, d := range rec {
				paths[d.Path] = true
			}
			if len(paths) > 1 {
				return nil, fmt.Errorf("no replay_job_status for webhook %s in the record, and it holds %d paths: say which with --path", o.Webhook, len(paths))
			}
		}
		if len(paths) > 1 {
			return nil, fmt.Errorf("webhook %s's status events arrived on %d paths: say which with --path", o.Webhook, len(paths))
		}
		for p := range paths {
			path = p
		}
	}
	r.Path = path
	// Segments: the deliveries between status events on the path.
	var seg []receiver.Delivery
	var jobs []struct {
		st   receiver.Status
		segs []receiver.Delivery
	}
	for _, d := range rec {
		if d.Path != path {
			continue
		}
		if d.Status != nil && d.SignatureValid {
			jobs = append(jobs, struct {
				st   receiver.Status
				segs []receiver.Delivery
			}{*d.Status, seg})
			seg = nil
			continue
		}
		seg = append(seg, d)
	}
	if o.Job == "" {
		if len(jobs) == 0 {
			r.Notes = append(r.Notes, "no replay_job_status on this path: every delivery on it is checked")
			return seg, nil
		}
		o.Job = jobs[len(jobs)-1].st.JobID
		if len(jobs) > 1 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d jobs ended on this path; checking the last, %s (--job picks another)", len(jobs), o.Job))
		}
	}
	for _, j := range jobs {
		if j.st.JobID == o.Job {
			r.Job = &receiver.JobStats{JobID: j.st.JobID, WebhookID: j.st.WebhookID, State: j.st.State, Description: j.st.Description, Path: path, Deliveries: int64(len(j.segs))}
			if j.st.WebhookID != o.Webhook {
				return nil, fmt.Errorf("job %s replayed webhook %s, not %s", o.Job, j.st.WebhookID, o.Webhook)
			}
			if len(seg) > 0 && j.st.JobID == jobs[len(jobs)-1].st.JobID {
				r.Notes = append(r.Notes, fmt.Sprintf("%d deliveries arrived after the job's status event and are not checked", len(seg)))
			}
			return j.segs, nil
		}
	}
	return nil, fmt.Errorf("no replay_job_status for job %s on path %s in the record", o.Job, path)
}

// Run verifies. The manifest is read twice when there are extra deliveries (to say why each is
// extra), so it is given as a function that opens it.
func Run(o Options, openManifest func() (io.ReadCloser, error), rec []receiver.Delivery) (*Report, error) {
	if o.Limit <= 0 {
		o.Limit = 20
	}
	if !o.From.Before(o.To) {
		return nil, fmt.Errorf("window [%s, %s) is empty", o.From, o.To)
	}
	r := &Report{Webhook: o.Webhook, From: o.From, To: o.To}
	got, err := selectDeliveries(&o, rec, r)
	if err != nil {
		return nil, err
	}
	from, to := o.From.UnixMilli(), o.To.UnixMilli()

	// Pass 1: the expected set.
	mf, err := openManifest()
	if err != nil {
		return nil, err
	}
	mr, err := manifest.NewReader(mf)
	if err != nil {
		mf.Close()
		return nil, err
	}
	widx := -1
	for i, id := range mr.Header().Webhooks {
		if id == o.Webhook {
			widx = i
		}
	}
	if widx < 0 {
		mr.Close()
		mf.Close()
		return nil, fmt.Errorf("webhook %s is not in the manifest (it has %d webhooks)", o.Webhook, len(mr.Header().Webhooks))
	}
	h := mr.Header()
	r.DCs = h.DCs
	read := uint32(1<<max(len(h.DCs), 1)) - 1 // the datacenters whose topics the replay read
	if len(o.DCs) > 0 {
		read = 0
		for _, d := range o.DCs {
			if d < 0 || d >= max(len(h.DCs), 1) {
				mr.Close()
				mf.Close()
				return nil, fmt.Errorf("datacenter %d: the manifest has %d", d+1, max(len(h.DCs), 1))
			}
			read |= 1 << d
		}
	}
	expected := map[uint64]int64{}
	where := map[uint64]uint32{} // the datacenters that got each event of the window
	for {
		e, err := mr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			mr.Close()
			mf.Close()
			return nil, err
		}
		if int(e.Webhook) == widx && e.Timestamp >= from && e.Timestamp < to && read&(1<<e.DC) != 0 {
			r.Produced++
			where[e.ID] |= 1 << e.DC
			if _, ok := expected[e.ID]; !ok {
				expected[e.ID] = e.Timestamp
			}
		}
	}
	mr.Close()
	mf.Close()
	r.Expected = len(expected)
	if len(r.DCs) > 1 {
		r.OnlyIn = make([]int, len(r.DCs))
		for _, set := range where {
			if set&(set-1) != 0 {
				r.InSeveral++
				continue
			}
			for i := range r.DCs {
				if set == 1<<i {
					r.OnlyIn[i]++
				}
			}
		}
	}

	// The deliveries.
	copies := map[string]int{}
	var order []string
	for _, d := range got {
		if !d.SignatureValid {
			r.BadSignatures++
			continue
		}
		if d.EventID == "" {
			r.NoEventID++
			continue
		}
		r.Delivered++
		if copies[d.EventID] == 0 {
			order = append(order, d.EventID)
		}
		copies[d.EventID]++
	}
	extra := map[uint64]string{} // id → reason, to be explained by pass 2
	for _, id := range order {
		n := copies[id]
		if n > 1 {
			r.Duplicated++
			r.DupCopies += n - 1
			if len(r.DupList) < o.Limit {
				r.DupList = append(r.DupList, Dup{ID: id, Copies: n})
			}
		}
		v, err := strconv.ParseUint(id, 10, 64)
		if _, ok := expected[v]; err == nil && ok {
			delete(expected, v)
			continue
		}
		r.Extra++
		if len(r.ExtraList) < o.Limit {
			r.ExtraList = append(r.ExtraList, Extra{ID: id, Reason: "not in the manifest"})
			if err == nil {
				extra[v] = ""
			}
		}
	}
	r.Missing = len(expected)
	missing := make([]Missed, 0, len(expected))
	for id, ts := range expected {
		missing = append(missing, Missed{id, ts, where[id]})
	}
	sort.Slice(missing, func(i, j int) bool {
		return missing[i].Timestamp < missing[j].Timestamp || missing[i].Timestamp == missing[j].Timestamp && missing[i].ID < missing[j].ID
	})
	r.MissingList = missing[:min(len(missing), o.Limit)]

	// Pass 2: say why the listed extras are extra.
	if len(extra) > 0 {
		if err := explain(openManifest, extra, widx, from, to); err != nil {
			return nil, err
		}
		for i := range r.ExtraList {
			if v, err := strconv.ParseUint(r.ExtraList[i].ID, 10, 64); err == nil && extra[v] != "" {
				r.ExtraList[i].Reason = extra[v]
			}
		}
	}
	return r, nil
}

func explain(openManifest func() (io.ReadCloser, error), extra map[uint64]string, widx int, from, to int64) error {
	mf, err := openManifest()
	if err != nil {
		return err
	}
	defer mf.Close()
	mr, err := manifest.NewReader(mf)
	if err != nil {
		return err
	}
	defer mr.Close()
	hooks := mr.Header().Webhooks
	for {
		e, err := mr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		reason, ok := extra[e.ID]
		if !ok || reason != "" {
			continue
		}
		var why []string
		if int(e.Webhook) != widx {
			why = append(why, "produced for webhook "+hooks[e.Webhook])
		}
		if e.Timestamp < from || e.Timestamp >= to {
			why = append(why, "at "+time.UnixMilli(e.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z")+", outside the window")
		}
		if len(why) == 0 {
			why = append(why, "in the window (delivered twice?)")
		}
		extra[e.ID] = strings.Join(why, ", ")
	}
}

// ErrFailed is returned by callers when a report is not OK.
var ErrFailed = errors.New("verify: the replay did not deliver exactly the expected events")
