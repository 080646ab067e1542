// Package e2e proves the fix against Argo's real workflow-controller (v3.5.4 and v3.7.18, built
// from Argo's Go module) on a real kube-apiserver + etcd, with a simulated node standing in for
// the kubelet and argoexec (test/harness.Node). Every scenario runs with and without the webhook;
// the runs without it must reproduce argo-workflows#12985, or the suite fails.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

var (
	cluster  *harness.Cluster
	adminCfg *rest.Config
	admin    client.Client
	hook     *harness.Webhook
	logDir   string
	// e2eVersions are the controller versions this run proves: $E2E_ARGO_VERSIONS (comma
	// separated), or every version of harness.ArgoVersions.
	e2eVersions = harness.ArgoVersions
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e suite setup failed:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	logf.SetLogger(harness.SuiteLogger())
	if env := os.Getenv("E2E_ARGO_VERSIONS"); env != "" {
		e2eVersions = strings.Split(env, ",")
	}
	for _, v := range e2eVersions {
		if !slices.Contains(harness.ArgoVersions, v) {
			return 0, fmt.Errorf("E2E_ARGO_VERSIONS names %s; the tool modules build %v", v, harness.ArgoVersions)
		}
		if _, err := harness.ControllerBinary(v); err != nil {
			return 0, err
		}
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return 0, err
	}
	logDir = filepath.Join(root, ".work", "e2e")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "acw-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if cluster, err = harness.StartCluster(dir); err != nil {
		return 0, err
	}
	defer func() { _ = cluster.Stop() }()
	admin, adminCfg = cluster.Admin, cluster.Config
	hook, err = harness.StartWebhook(harness.WebhookOptions{
		Dir: filepath.Join(dir, "webhook"), Kubeconfig: cluster.WebhookKubeconfig, Mode: webhook.ModeEnforce,
		ControllerUsernames: []string{harness.ControllerUser}, B2Grace: e2eB2Grace, Log: harness.SuiteLogger(),
	})
	if err != nil {
		return 0, err
	}
	defer hook.Stop()
	return m.Run(), nil
}
