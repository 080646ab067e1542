// Package deploy validates the two ways of installing the webhook, deploy/ (kustomize) and the
// Helm chart deploy/chart/argo-completion-webhook, on a real kube-apiserver v1.37.2 with Argo's,
// cert-manager's and the Prometheus Operator's CRDs installed: every rendering (the base, each
// overlay, the monitoring component, the chart's defaults and each of its ci/ values) is accepted
// by server-side dry-run under Pod Security "restricted" without a warning; the RBAC is exactly
// enough for the webhook and the repair in each (an audit install's repair only reports and
// cannot patch; a scoped one reads and patches only in its namespaces); the chart's defaults
// render deploy/'s objects; every alert parses with Prometheus' parser and selects what the
// install exports; and cert-manager's certificate hand-off (Secret files, CA injection, rotation)
// works with the real API server calling the webhook.
package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

var (
	env      *envtest.Environment
	adminCfg *rest.Config
	admin    client.Client
	root     string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy suite setup failed:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	logf.SetLogger(logr.Discard())
	var err error
	if root, err = controlplane.RepoRoot(); err != nil {
		return 0, err
	}
	for tool, why := range map[string]string{
		"kustomize": "renders deploy/",
		"helm":      "lints and renders the chart",
		"promql":    "parses the alerts with Prometheus' parser",
	} {
		if _, err := os.Stat(toolBin(tool)); err != nil {
			return 0, fmt.Errorf("%s not found: run `make %s` (the deploy suite %s with it)", toolBin(tool), tool, why)
		}
	}
	certManager, err := controlplane.CertManagerCRDDir()
	if err != nil {
		return 0, err
	}
	monitoring, err := prometheusOperatorCRDs()
	if err != nil {
		return 0, err
	}
	if env, adminCfg, err = controlplane.StartEnv(append([]string{certManager}, monitoring...)...); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	if admin, err = client.New(adminCfg, client.Options{Scheme: harness.Scheme()}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// toolBin is the path of a tool the Makefile builds into bin/.
func toolBin(name string) string { return filepath.Join(root, "bin", name) }

// prometheusOperatorCRDs returns the CRD files of ServiceMonitor and PrometheusRule from the
// Prometheus Operator module pinned in test/tools/prometheus-operator.
func prometheusOperatorCRDs() ([]string, error) {
	dir, err := controlplane.ModuleDir("prometheus-operator", "github.com/prometheus-operator/prometheus-operator")
	if err != nil {
		return nil, err
	}
	crds := filepath.Join(dir, "example", "prometheus-operator-crd")
	return []string{
		filepath.Join(crds, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(crds, "monitoring.coreos.com_prometheusrules.yaml"),
	}, nil
}
