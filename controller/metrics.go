package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the leader loop's Prometheus metrics.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duration   prometheus.Histogram
	leading    prometheus.Gauge
	issued     *prometheus.CounterVec
	pushed     prometheus.Counter
	queue      prometheus.Gauge
}

// NewMetrics registers the leader loop's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttoperator_reconcile_total", Help: "Cluster reconciles by result (success, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mqttoperator_reconcile_duration_seconds", Help: "Duration of one cluster reconcile.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqttoperator_leader_loop_running", Help: "1 while this operator's reconcile loop runs (it leads).",
		}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttoperator_certificate_issued_total", Help: "Server certificates issued, by reason (Missing, Expiring, Requested, ...).",
		}, []string{"reason"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqttoperator_reconcile_queue_depth", Help: "Clusters due for a reconcile and waiting (the leader's queue), after each pass.",
		}),
		pushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqttoperator_certificate_pushed_total", Help: "Certificates pushed into running HAProxy tasks through the runtime API (no restart).",
		}),
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.leading, m.issued, m.pushed, m.queue} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Both results exist from the start, so rate() works at once.
	m.reconciles.WithLabelValues("success")
	m.reconciles.WithLabelValues("error")
	return m, nil
}

func (m *Metrics) observe(start time.Time, err error) {
	if m == nil {
		return
	}
	m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		m.reconciles.WithLabelValues("error").Inc()
	} else {
		m.reconciles.WithLabelValues("success").Inc()
	}
}

func (m *Metrics) setLeading(v bool) {
	if m == nil {
		return
	}
	if v {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

func (m *Metrics) certificateIssued(reason string) {
	if m == nil {
		return
	}
	m.issued.WithLabelValues(reason).Inc()
}

func (m *Metrics) certificatePushed() {
	if m == nil {
		return
	}
	m.pushed.Inc()
}

func (m *Metrics) setQueue(n int) {
	if m == nil {
		return
	}
	m.queue.Set(float64(n))
}
