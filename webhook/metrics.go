package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
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
