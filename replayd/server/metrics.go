package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/replay/replay/engine"
	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/job"
)

// newRegistry is the server's Prometheus registry: the Go and process collectors, the index's
// lag per partition and the job store's jobs by state, read at each scrape. The API and the
// workers add theirs.
func newRegistry(ix *index.Live, src engine.Source, jobs job.Driver, c Config) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ts := engine.TopicsOf(src); ts.Len() > 1 {
		// Several topics: per topic-partition, and how far each mirrored one is behind.
		reg.MustRegister(indexLagCollector{ix: ix, topics: true,
			desc: prometheus.NewDesc("replay_index_lag_offsets", "Offsets of the log not yet indexed, per topic and partition.", []string{"topic", "partition"}, nil)})
		reg.MustRegister(mirrorLagCollector{src: ts, now: time.Now,
			desc: prometheus.NewDesc("replay_mirror_lag_seconds",
				"Age of the newest record of a mirrored topic's partition (its newest timestamp's distance from now): the mirror's lag while the partition has traffic, plus any idle time.",
				[]string{"topic", "partition"}, nil)})
	} else {
		reg.MustRegister(indexLagCollector{ix: ix,
			desc: prometheus.NewDesc("replay_index_lag_offsets", "Offsets of the log not yet indexed, per partition.", []string{"partition"}, nil)})
	}
	reg.MustRegister(jobsCollector{jobs: jobs,
		desc: prometheus.NewDesc("replay_jobs", "Replay jobs in the job store, by state (all instances').", []string{"state"}, nil)})
	reg.MustRegister(healthCollector{ix: ix, c: c,
		degraded: prometheus.NewDesc("replay_index_builder_degraded", "1 while the index builder is stopped by an error and retried (lookups scan what is not indexed), else 0.", nil, nil),
		failures: prometheus.NewDesc("replay_index_builder_failures", "The index builder's failures in a row (0 while it runs).", nil, nil),
		free:     prometheus.NewDesc("replay_data_disk_free_bytes", "Free bytes on the data directory's filesystem.", nil, nil),
		reserve:  prometheus.NewDesc("replay_data_disk_reserve_bytes", "The free space below which the index builder pauses and store writes are refused (--disk-reserve).", nil, nil),
	})
	return reg
}

// healthCollector exposes the index builder's health and the data directory's free space.
type healthCollector struct {
	ix                                *index.Live
	c                                 Config
	degraded, failures, free, reserve *prometheus.Desc
}

func (h healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.degraded
	ch <- h.failures
	ch <- h.free
	ch <- h.reserve
}

func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	st := h.ix.Health()
	d := 0.0
	if st.Degraded {
		d = 1
	}
	ch <- prometheus.MustNewConstMetric(h.degraded, prometheus.GaugeValue, d)
	ch <- prometheus.MustNewConstMetric(h.failures, prometheus.GaugeValue, float64(st.Failures))
	if du, err := h.c.FS.GetDiskUsage(h.c.DataDir); err == nil {
		ch <- prometheus.MustNewConstMetric(h.free, prometheus.GaugeValue, float64(du.AvailBytes))
	}
	ch <- prometheus.MustNewConstMetric(h.reserve, prometheus.GaugeValue, float64(max(h.c.DiskReserve, 0)))
}

// indexLagCollector exposes, per partition, how many offsets the index is behind the log.
type indexLagCollector struct {
	ix     *index.Live
	topics bool // labelled by topic and the topic's partition
	desc   *prometheus.Desc
}

func (c indexLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c indexLagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := c.ix.Lag(ctx)
	if err != nil {
		return
	}
	for _, l := range lags {
		if c.topics {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), l.Topic, strconv.Itoa(int(l.TopicPartition)))
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), strconv.Itoa(int(l.Partition)))
	}
}

// mirrorLagCollector exposes, per partition of each mirrored topic (every topic but the first),
// the age of its newest record. A replay waits for the mirrored partition to reach its window's
// end (worker.Options.MirrorWait): this says how far back that is true.
type mirrorLagCollector struct {
	src  *engine.Topics
	now  func() time.Time
	desc *prometheus.Desc
}

func (c mirrorLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c mirrorLagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	per := c.src.PerTopicKnown()
	for i := 1; i < c.src.Len(); i++ {
		for p := range per {
			ts, ok, err := engine.NewestTimestamp(ctx, c.src, engine.Partition(i, p, per))
			if err != nil || !ok {
				continue
			}
			age := max(0, c.now().Sub(time.UnixMilli(ts)).Seconds())
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age, c.src.Name(i), strconv.Itoa(int(p)))
		}
	}
}

// jobsCollector counts the job store's jobs by state at each scrape.
type jobsCollector struct {
	jobs job.Driver
	desc *prometheus.Desc
}

func (c jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.jobs.Count(ctx, job.CountParams{})
	if err != nil {
		return
	}
	for _, st := range job.AllStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), st.String())
	}
}
