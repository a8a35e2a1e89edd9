package console

import (
	"context"
	"sync"
	"time"

	"github.com/replay/replay/replayd/job"
)

// sampler records, every SampleEvery, the counters of every active job (from the job store, so
// jobs of every instance: their counters move with each heartbeat) into a ring per job, and
// this process's delivered count into a ring of its own. A job that stops being active gets one
// last sample and its ring is kept for ringTTL.
type sampler struct {
	o Options

	mu       sync.Mutex
	jobs     map[int64]*ring
	instance ring

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	done                chan struct{}
}

// ringTTL is how long a finished job's samples stay.
const ringTTL = time.Hour

type ring struct {
	buf  []Sample
	next int
	full bool
	seen time.Time // last sampled while active
}

func (r *ring) add(s Sample, n int) {
	if r.buf == nil {
		r.buf = make([]Sample, n)
	}
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *ring) list() []Sample {
	if !r.full {
		return append([]Sample(nil), r.buf[:r.next]...)
	}
	return append(append([]Sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

func newSampler(o Options) *sampler {
	return &sampler{o: o, jobs: map[int64]*ring{}, done: make(chan struct{})}
}

func (s *sampler) start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		go s.loop(ctx)
	})
}

func (s *sampler) stop() {
	s.stopOnce.Do(func() {
		s.startOnce.Do(func() { close(s.done) }) // never started
		if s.cancel != nil {
			s.cancel()
		}
		<-s.done
	})
}

func (s *sampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.o.SampleEvery)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample takes one round of samples.
func (s *sampler) sample(ctx context.Context) {
	now := s.o.Now()
	if s.o.Delivered != nil {
		s.mu.Lock()
		s.instance.add(Sample{At: now, Delivered: s.o.Delivered()}, s.o.Samples)
		s.mu.Unlock()
	}
	res, err := s.o.Jobs.List(ctx, job.ListParams{States: job.ActiveStates, Limit: job.MaxListLimit})
	if err != nil {
		if ctx.Err() == nil {
			s.o.Logger.Warn("console: sampling active jobs", "err", err)
		}
		return
	}
	active := map[int64]bool{}
	s.mu.Lock()
	for _, j := range res.Jobs {
		active[j.ID] = true
		r := s.jobs[j.ID]
		if r == nil {
			r = &ring{}
			s.jobs[j.ID] = r
		}
		r.add(Sample{At: now, Read: j.Counters.Read, Delivered: j.Counters.Delivered, Checkpoint: j.Checkpoint}, s.o.Samples)
		r.seen = now
	}
	var ended []int64
	for id, r := range s.jobs {
		switch {
		case active[id]:
		case r.seen.Equal(time.Time{}):
		case now.Sub(r.seen) > ringTTL:
			delete(s.jobs, id)
		case r.seen.After(now.Add(-s.o.SampleEvery * 3 / 2)):
			ended = append(ended, id) // active at the last round: record where it ended
		}
	}
	s.mu.Unlock()
	for _, id := range ended {
		j, err := s.o.Jobs.Get(ctx, job.GetParams{ID: id})
		if err != nil {
			continue
		}
		s.mu.Lock()
		if r := s.jobs[id]; r != nil {
			r.add(Sample{At: now, Read: j.Counters.Read, Delivered: j.Counters.Delivered, Checkpoint: j.Checkpoint}, s.o.Samples)
		}
		s.mu.Unlock()
	}
}

// samples are j's samples, oldest first, with j's counters as now read appended when they are
// newer than the last sample.
func (s *sampler) samples(j *job.Job) []Sample {
	s.mu.Lock()
	var out []Sample
	if r := s.jobs[j.ID]; r != nil {
		out = r.list()
	}
	s.mu.Unlock()
	if n := len(out); j.State.Active() && (n == 0 || out[n-1].Delivered != j.Counters.Delivered || out[n-1].Read != j.Counters.Read) {
		out = append(out, Sample{At: s.o.Now(), Read: j.Counters.Read, Delivered: j.Counters.Delivered, Checkpoint: j.Checkpoint})
	}
	return out
}

// rateSpan is the stretch of samples a rate is measured over.
const rateSpan = 30 * time.Second

// rate is j's events delivered per second over the last rateSpan of samples; for a finished job
// (or one with fewer samples) its average from start to its last update.
func (s *sampler) rate(j *job.Job) float64 {
	if j.State.Active() {
		if r := ratio(s.samples(j), rateSpan); r > 0 {
			return r
		}
	}
	if !j.StartedAt.IsZero() && j.UpdatedAt.After(j.StartedAt) {
		return float64(j.Counters.Delivered) / j.UpdatedAt.Sub(j.StartedAt).Seconds()
	}
	return 0
}

// ratio is the delivered count's growth per second from the oldest sample within span of the
// last to the last.
func ratio(samples []Sample, span time.Duration) float64 {
	if len(samples) < 2 {
		return 0
	}
	last := samples[len(samples)-1]
	first := last
	for i := len(samples) - 2; i >= 0 && last.At.Sub(samples[i].At) <= span; i-- {
		first = samples[i]
	}
	dt := last.At.Sub(first.At).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.Delivered-first.Delivered) / dt
}

// Throughput is the instance's delivery throughput.
type Throughput struct {
	Known bool
	// Delivered is what this process delivered since it started.
	Delivered int64
	// Last10s and LastMinute are events per second over those spans.
	Last10s, LastMinute float64
}

func (s *sampler) throughput() Throughput {
	s.mu.Lock()
	samples := s.instance.list()
	s.mu.Unlock()
	if len(samples) == 0 {
		return Throughput{}
	}
	return Throughput{Known: true, Delivered: samples[len(samples)-1].Delivered,
		Last10s: ratio(samples, 10*time.Second), LastMinute: ratio(samples, time.Minute)}
}
