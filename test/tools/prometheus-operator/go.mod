// Module prometheus-operator pins the Prometheus Operator release whose CRDs
// (example/prometheus-operator-crd in its module) the deploy validation installs, so the
// ServiceMonitor and PrometheusRule of deploy/components/monitoring and the chart are checked by
// server-side dry-run against their schemas. Only the CRDs are used: the operator is not built.
module github.com/argo-completion-webhook/argo-completion-webhook/test/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.89.0
