package webhook

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The webhook's own metrics, registered in controller-runtime's registry so /metrics serves them
// beside its controller_runtime_webhook_* metrics.
var (
	decisionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "argo_completion_webhook_decisions_total",
		Help: "Admission requests decided, by object kind (taskresult, workflow), the rule that applied (none when nothing did) and mode.",
	}, []string{"kind", "rule", "mode"})
	lookupErrorsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "argo_completion_webhook_lookup_errors_total",
		Help: "Pod lookups that failed or timed out; each such request was allowed unpatched.",
	})
	badRequestsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "argo_completion_webhook_bad_requests_total",
		Help: "Requests answered with an error because the body was not a readable AdmissionReview.",
	})
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "argo_completion_webhook_events_total",
		Help: "Events about a mutation: queued to be sent on the Workflow, or dropped over the rate limit.",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(decisionsTotal, lookupErrorsTotal, badRequestsTotal, eventsTotal)
}

// requestMetrics are a server's own copy of the request metrics controller-runtime's webhook
// server keeps per endpoint in its process-wide registry (pkg/webhook/internal/metrics), with the
// same names, labels and buckets: for a process that runs several servers, each with a registry
// of its own (Options.Metrics), so each server's /metrics counts only what that server answered.
type requestMetrics struct {
	latency  *prometheus.HistogramVec
	total    *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
}

// newRequestMetrics registers, in a server's own registry, its request metrics and the process's
// argo_completion_webhook_* counters, so that registry alone is what its /metrics serves.
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
	for _, c := range []prometheus.Collector{m.latency, m.total, m.inFlight, decisionsTotal, lookupErrorsTotal, badRequestsTotal, eventsTotal} {
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
