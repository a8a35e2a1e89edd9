package worker

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the workers' Prometheus collectors.
type Metrics struct {
	EventsRead         prometheus.Counter
	EventsDelivered    prometheus.Counter
	EventsDeduplicated prometheus.Counter
	EventsFailed       prometheus.Counter
	// EventsRedelivered counts deliveries, after a takeover, of events an earlier holder had
	// reported delivered (job.Counters.Redelivered).
	EventsRedelivered prometheus.Counter
	DeliveryLatency   prometheus.Histogram
	JobsFinished      *prometheus.CounterVec // by final state
	Takeovers         prometheus.Counter
	JobsRunning       prometheus.Gauge
	// DeliveryWindow is the delivery window of the job that last settled a delivery: how many
	// of its deliveries may be in flight (see window).
	DeliveryWindow prometheus.Gauge
	// WebhookOutages counts the times a job found its webhook down and paused; JobsPaused is the
	// jobs paused now (outage.go).
	WebhookOutages prometheus.Counter
	JobsPaused     prometheus.Gauge
	// StatusEvents counts the replay_job_status events by outcome: delivered, or given up.
	StatusEvents *prometheus.CounterVec
	// Per source topic (the local delivery_log and the mirrored ones): events read, delivered
	// and dropped as duplicates, and the share of duplicates among those read, in percent, since
	// the process started (what an operator graphs and alerts on; over a time range it is
	// rate(deduplicated) / rate(read) of the two counters).
	TopicRead             *prometheus.CounterVec
	TopicDelivered        *prometheus.CounterVec
	TopicDeduplicated     *prometheus.CounterVec
	TopicDuplicatePercent *prometheus.GaugeVec

	mu     sync.Mutex
	topics map[string]*topicMetrics
}

// topicMetrics are one topic's collectors and the totals its duplicate percentage is of.
type topicMetrics struct {
	read, delivered, dedup prometheus.Counter
	percent                prometheus.Gauge
	mu                     sync.Mutex
	nRead, nDup            int64
}

func (t *topicMetrics) readOne(dup bool) {
	t.read.Inc()
	if dup {
		t.dedup.Inc()
	}
	t.mu.Lock()
	t.nRead++
	if dup {
		t.nDup++
	}
	t.percent.Set(100 * float64(t.nDup) / float64(t.nRead))
	t.mu.Unlock()
}

// topic is the collectors of one source topic.
func (m *Metrics) topic(name string) *topicMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.topics[name]; ok {
		return t
	}
	t := &topicMetrics{read: m.TopicRead.WithLabelValues(name), delivered: m.TopicDelivered.WithLabelValues(name),
		dedup: m.TopicDeduplicated.WithLabelValues(name), percent: m.TopicDuplicatePercent.WithLabelValues(name)}
	m.topics[name] = t
	return t
}

// NewMetrics makes the collectors and registers them with reg; with a nil reg they count for no
// one (what a Pool without Options.Metrics uses, so that the workers never check for nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsRead:         prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_read_total", Help: "Events of a job's webhook and window read from the log."}),
		EventsDelivered:    prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_delivered_total", Help: "Events delivered to webhooks."}),
		EventsDeduplicated: prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_deduplicated_total", Help: "Duplicate events dropped."}),
		EventsFailed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_failed_total", Help: "Events not delivered."}),
		EventsRedelivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_redelivered_total",
			Help: "Events delivered again after a takeover that an earlier holder of the job had reported delivered."}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replay_delivery_seconds", Help: "Time to deliver one event, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_jobs_finished_total", Help: "Jobs finished by this process, by final state."}, []string{"state"}),
		Takeovers:    prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_job_takeovers_total", Help: "Jobs leased after another worker's lease expired or was released."}),
		JobsRunning:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_jobs_running", Help: "Jobs this process is running."}),
		DeliveryWindow: prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_delivery_window",
			Help: "Deliveries of a job allowed in flight (the adaptive window of the job that last settled one)."}),
		TopicRead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_topic_events_read_total",
			Help: "Events of a job's webhook and window read, by source topic."}, []string{"topic"}),
		TopicDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_topic_events_delivered_total",
			Help: "Events delivered, by the source topic they were read from."}, []string{"topic"}),
		TopicDeduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_topic_events_deduplicated_total",
			Help: "Events dropped as duplicates of one read before (from any topic), by source topic."}, []string{"topic"}),
		TopicDuplicatePercent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "replay_topic_duplicate_percent",
			Help: "Duplicates among the events read from the topic since the process started, in percent."}, []string{"topic"}),
		topics:         map[string]*topicMetrics{},
		WebhookOutages: prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_webhook_outages_total", Help: "Times a job found its webhook down (a retryable failure after the delivery client's attempts) and paused."}),
		JobsPaused:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_jobs_paused", Help: "Jobs of this process paused while their webhook is down."}),
		StatusEvents:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_status_events_total", Help: "replay_job_status events, by outcome (delivered, given_up)."}, []string{"outcome"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.EventsRead, m.EventsDelivered, m.EventsDeduplicated, m.EventsFailed, m.EventsRedelivered, m.DeliveryLatency, m.JobsFinished, m.Takeovers, m.JobsRunning, m.DeliveryWindow,
		m.TopicRead, m.TopicDelivered, m.TopicDeduplicated, m.TopicDuplicatePercent,
		m.WebhookOutages, m.JobsPaused, m.StatusEvents)
	return m
}
