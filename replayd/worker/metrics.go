package worker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the workers' Prometheus collectors.
type Metrics struct {
	EventsRead         prometheus.Counter
	EventsDelivered    prometheus.Counter
	EventsDeduplicated prometheus.Counter
	EventsFailed       prometheus.Counter
	DeliveryLatency    prometheus.Histogram
	JobsFinished       *prometheus.CounterVec // by final state
	Takeovers          prometheus.Counter
	JobsRunning        prometheus.Gauge
	// DeliveryWindow is the delivery window of the job that last settled a delivery: how many
	// of its deliveries may be in flight (see window).
	DeliveryWindow prometheus.Gauge
	// WebhookOutages counts the times a job found its webhook down and paused; JobsPaused is the
	// jobs paused now (outage.go).
	WebhookOutages prometheus.Counter
	JobsPaused     prometheus.Gauge
	// StatusEvents counts the replay_job_status events by outcome: delivered, or given up.
	StatusEvents *prometheus.CounterVec
}

// NewMetrics makes the collectors and registers them with reg; with a nil reg they count for no
// one (what a Pool without Options.Metrics uses, so that the workers never check for nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsRead:         prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_read_total", Help: "Events of a job's webhook and window read from the log."}),
		EventsDelivered:    prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_delivered_total", Help: "Events delivered to webhooks."}),
		EventsDeduplicated: prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_deduplicated_total", Help: "Duplicate events dropped."}),
		EventsFailed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_events_failed_total", Help: "Events not delivered."}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "replay_delivery_seconds", Help: "Time to deliver one event, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_jobs_finished_total", Help: "Jobs finished by this process, by final state."}, []string{"state"}),
		Takeovers:    prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_job_takeovers_total", Help: "Jobs leased after another worker's lease expired or was released."}),
		JobsRunning:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_jobs_running", Help: "Jobs this process is running."}),
		DeliveryWindow: prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_delivery_window",
			Help: "Deliveries of a job allowed in flight (the adaptive window of the job that last settled one)."}),
		WebhookOutages: prometheus.NewCounter(prometheus.CounterOpts{Name: "replay_webhook_outages_total", Help: "Times a job found its webhook down (a retryable failure after the delivery client's attempts) and paused."}),
		JobsPaused:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "replay_jobs_paused", Help: "Jobs of this process paused while their webhook is down."}),
		StatusEvents:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "replay_status_events_total", Help: "replay_job_status events, by outcome (delivered, given_up)."}, []string{"outcome"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.EventsRead, m.EventsDelivered, m.EventsDeduplicated, m.EventsFailed, m.DeliveryLatency, m.JobsFinished, m.Takeovers, m.JobsRunning, m.DeliveryWindow,
		m.WebhookOutages, m.JobsPaused, m.StatusEvents)
	return m
}
