// Package integration runs the webhook behind a real kube-apiserver and etcd: the API server calls
// it through the shipped MutatingWebhookConfiguration (deploy/), applies its patches and persists
// them. Nothing here is faked: requests come from the API server's admission chain. The
// kube-apiserver is v1.37.2, or K8S_VERSION's (`make integration-k8s-min` runs on 1.30.14).
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

const (
	argoNS        = "argo"
	executorSA    = "system:serviceaccount:argo:default"
	controllerSA  = "system:serviceaccount:argo:argo"
	webhookUser   = "argo-completion-webhook"
	webhookConfig = "argo-completion-webhook"
)

// The suite's shared state: one control plane and one webhook server for the package.
var (
	env        *envtest.Environment
	adminCfg   *rest.Config
	admin      client.Client
	scheme     = harness.Scheme()
	kubeconfig string // the webhook's own kubeconfig: a user that may only read pods
	enforce    *harness.Webhook
	scratch    string // the suite's scratch directory
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration suite setup failed:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	logf.SetLogger(harness.SuiteLogger())
	var err error
	env, adminCfg, err = controlplane.StartEnv()
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(os.Stderr, "integration: kube-apiserver from %s\n", env.BinaryAssetsDirectory)
	defer func() { _ = env.Stop() }()
	if admin, err = client.New(adminCfg, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	ctx := context.Background()
	if err := setupCluster(ctx); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "acw-integration-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	scratch = dir
	user, err := env.AddUser(envtest.User{Name: webhookUser}, nil)
	if err != nil {
		return 0, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return 0, err
	}
	kubeconfig = filepath.Join(dir, "webhook.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return 0, err
	}
	enforce, err = startWebhook(filepath.Join(dir, "enforce"), webhook.ModeEnforce)
	if err != nil {
		return 0, err
	}
	defer enforce.Stop()
	if err := harness.Register(ctx, admin, enforce, argoNS); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// setupCluster creates the namespaces and the RBAC Argo's components and the webhook run with:
// the executor may create and patch task results (Argo's executor Role), the controller may
// update workflows, and the webhook may only read pods (deploy/).
func setupCluster(ctx context.Context) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: argoNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "argo-completion-webhook"}},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "executor"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"}}},
		},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "controller"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows"}, Verbs: []string{"get", "update", "patch"}}},
		},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "argo-completion-webhook"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
				// Rule B2 reads the incomplete entries' task results (deploy/base/rbac.yaml).
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "executor"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "executor"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: argoNS}, {Kind: "ServiceAccount", Name: "default", Namespace: "argo-completion-webhook"}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "controller"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "controller"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "argo", Namespace: argoNS}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "argo-completion-webhook"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "argo-completion-webhook"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: webhookUser}},
		},
	}
	for _, o := range objs {
		if err := admin.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// startWebhook starts a webhook server with the suite's least-privilege kubeconfig.
func startWebhook(dir string, mode webhook.Mode) (*harness.Webhook, error) {
	log := harness.SuiteLogger()
	return harness.StartWebhook(harness.WebhookOptions{
		Dir: dir, Kubeconfig: kubeconfig, Mode: mode, ControllerUsernames: []string{controllerSA}, Log: log,
	})
}

// unregister removes the webhook configuration; registerEnforce restores the suite's server.
func unregister(ctx context.Context) error { return harness.Unregister(ctx, admin) }

func registerEnforce(ctx context.Context) error { return harness.Register(ctx, admin, enforce, argoNS) }
