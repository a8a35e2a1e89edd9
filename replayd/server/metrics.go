package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/replay/replay/index"
	"github.com/replay/replay/replayd/job"
)

// newRegistry is the server's Prometheus registry: the Go and process collectors, the index's
// lag per partition and the job store's jobs by state, read at each scrape. The API and the
// workers add theirs.
func newRegistry(ix *index.Live, jobs job.Driver) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(indexLagCollector{ix: ix,
		desc: prometheus.NewDesc("replay_index_lag_offsets", "Offsets of the log not yet indexed, per partition.", []string{"partition"}, nil)})
	reg.MustRegister(jobsCollector{jobs: jobs,
		desc: prometheus.NewDesc("replay_jobs", "Replay jobs in the job store, by state (all instances').", []string{"state"}, nil)})
	return reg
}

// indexLagCollector exposes, per partition, how many offsets the index is behind the log.
type indexLagCollector struct {
	ix   *index.Live
	desc *prometheus.Desc
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
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), strconv.Itoa(int(l.Partition)))
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
