// Package metrics holds the operator's own Prometheus metrics: reconciles,
// leadership, certificates issued and pushed, the queue, git sync. Every
// method is safe on a nil *Metrics (no metrics).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Metrics are the leader-side work's Prometheus metrics.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duration   prometheus.Histogram
	leading    prometheus.Gauge
	issued     *prometheus.CounterVec
	pushed     prometheus.Counter
	queue      prometheus.Gauge
	gitOK      prometheus.Gauge
	gitRuns    *prometheus.CounterVec
	gitLast    prometheus.Gauge
	gitDrift   prometheus.Gauge
	gitCommit  *prometheus.GaugeVec
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
		gitOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqttoperator_gitsync_ok", Help: "1 if the last git sync applied its commit in full, 0 if it failed.",
		}),
		gitRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqttoperator_gitsync_runs_total", Help: "Git syncs by result (success, error).",
		}, []string{"result"}),
		gitLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqttoperator_gitsync_last_success_timestamp_seconds", Help: "When the last successful git sync ran, Unix seconds.",
		}),
		gitDrift: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mqttoperator_gitsync_drifted_clusters", Help: "Clusters whose live spec the last git sync found changed by hand (and put back).",
		}),
		gitCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mqttoperator_gitsync_commit_info", Help: "1 for the commit the git sync last applied.",
		}, []string{"commit"}),
		pushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqttoperator_certificate_pushed_total", Help: "Certificates pushed into running HAProxy tasks through the runtime API (no restart).",
		}),
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.duration, m.leading, m.issued, m.pushed, m.queue, m.gitOK, m.gitRuns, m.gitLast, m.gitDrift, m.gitCommit} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Both results exist from the start, so rate() works at once.
	m.reconciles.WithLabelValues("success")
	m.reconciles.WithLabelValues("error")
	return m, nil
}

func (m *Metrics) Observe(start time.Time, err error) {
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

func (m *Metrics) SetLeading(v bool) {
	if m == nil {
		return
	}
	if v {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

func (m *Metrics) CertificateIssued(reason string) {
	if m == nil {
		return
	}
	m.issued.WithLabelValues(reason).Inc()
}

func (m *Metrics) CertificatePushed() {
	if m == nil {
		return
	}
	m.pushed.Inc()
}

func (m *Metrics) SetQueue(n int) {
	if m == nil {
		return
	}
	m.queue.Set(float64(n))
}

func (m *Metrics) GitSync(ok bool, st *api.GitSyncStatus) {
	if m == nil {
		return
	}
	if !ok {
		m.gitOK.Set(0)
		m.gitRuns.WithLabelValues("error").Inc()
		return
	}
	m.gitOK.Set(1)
	m.gitRuns.WithLabelValues("success").Inc()
	m.gitLast.Set(float64(st.LastSuccess.Unix()))
	m.gitDrift.Set(float64(len(st.Drift)))
	m.gitCommit.Reset()
	m.gitCommit.WithLabelValues(st.Commit).Set(1)
}
