package webhook

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Counters are the webhook's own metrics (argo_completion_webhook_*), one set per registry: the
// handlers of a server count into the set its HandlerOptions carry.
type Counters struct {
	decisions    *prometheus.CounterVec
	lookupErrors prometheus.Counter
	badRequests  prometheus.Counter
	events       *prometheus.CounterVec
}

// NewCounters creates a set of the webhook's counters and registers it in reg.
func NewCounters(reg prometheus.Registerer) (*Counters, error) {
	c := &Counters{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "argo_completion_webhook_decisions_total",
			Help: "Admission requests decided, by object kind (taskresult, workflow), the rule that applied (none when nothing did) and mode.",
		}, []string{"kind", "rule", "mode"}),
		lookupErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "argo_completion_webhook_lookup_errors_total",
			Help: "Pod lookups that failed or timed out; each such request was allowed unpatched.",
		}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "argo_completion_webhook_bad_requests_total",
			Help: "Requests answered with an error because the body was not a readable AdmissionReview.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "argo_completion_webhook_events_total",
			Help: "Events about a mutation: queued to be sent on the Workflow, or dropped over the rate limit.",
		}, []string{"result"}),
	}
	for _, m := range []prometheus.Collector{c.decisions, c.lookupErrors, c.badRequests, c.events} {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return c, nil
}

// processCounters are the counters registered in controller-runtime's registry, beside its
// controller_runtime_webhook_* metrics: what /metrics serves in production (Options.Metrics nil),
// and what handlers built without HandlerOptions.Counters count into.
var processCounters = func() *Counters {
	c, err := NewCounters(metrics.Registry)
	if err != nil {
		panic(err)
	}
	return c
}()

// requestMetrics are a server's own copy of the request metrics controller-runtime's webhook
// server keeps per endpoint in its process-wide registry (pkg/webhook/internal/metrics), with the
// same names, labels and buckets: for a process that runs several servers, each with a registry
// of its own (Options.Metrics), so each server's /metrics counts only what that server answered.
type requestMetrics struct {
	latency  *prometheus.HistogramVec
	total    *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
}

// newRequestMetrics registers a server's request metrics in its own registry.
func newRequestMetrics(own *prometheus.Registry) (*requestMetrics, error) {
	m := &requestMetrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "controller_runtime_webhook_latency_seconds",
			Help:                            "Histogram of the latency of processing admission requests",
			Buckets:                         prometheus.ExponentialBuckets(10e-9, 10, 12),
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  100,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"webhook"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controller_runtime_webhook_requests_total",
			Help: "Total number of admission requests by HTTP status code.",
		}, []string{"webhook", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "controller_runtime_webhook_requests_in_flight",
			Help: "Current number of admission requests being served.",
		}, []string{"webhook"}),
	}
	for _, c := range []prometheus.Collector{m.latency, m.total, m.inFlight} {
		if err := own.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}

// instrument counts and times the requests h answers at path, as controller-runtime's
// InstrumentedHook does.
func (m *requestMetrics) instrument(path string, h http.Handler) http.Handler {
	lbl := prometheus.Labels{"webhook": path}
	total := m.total.MustCurryWith(lbl)
	total.WithLabelValues("200")
	total.WithLabelValues("500")
	return promhttp.InstrumentHandlerDuration(m.latency.MustCurryWith(lbl),
		promhttp.InstrumentHandlerCounter(total, promhttp.InstrumentHandlerInFlight(m.inFlight.With(lbl), h)))
}
