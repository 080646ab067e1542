// Package e2e proves the fix against Argo's real workflow-controller (v3.5.4 and v3.7.18, built
// from Argo's Go module) on a real kube-apiserver + etcd, with a simulated node standing in for
// the kubelet and argoexec (test/harness.Node). Every scenario runs with and without the webhook;
// the runs without it must reproduce argo-workflows#12985, or the suite fails.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

const controllerUser = "argo-controller"

var (
	adminCfg             *rest.Config
	admin                client.Client
	scheme               = runtime.NewScheme()
	controllerKubeconfig string
	hook                 *harness.Webhook
	logDir               string
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
	logf.SetLogger(suiteLogger())
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return 0, err
		}
	}
	for _, v := range harness.ArgoVersions {
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
	env, cfg, err := controlplane.StartEnv()
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	adminCfg = cfg
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "acw-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	// The controller runs as its own user (full rights, as its ClusterRole grants in practice);
	// the webhook as a user that may only read pods.
	if controllerKubeconfig, err = userKubeconfig(env, dir, envtest.User{Name: controllerUser, Groups: []string{"system:masters"}}); err != nil {
		return 0, err
	}
	webhookKubeconfig, err := userKubeconfig(env, dir, envtest.User{Name: "argo-completion-webhook"})
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	for _, o := range []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metaName("argo-completion-webhook"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metaName("argo-completion-webhook"),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "argo-completion-webhook"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "argo-completion-webhook"}}},
		// Argo's executor Role (manifests/quick-start/base/executor/emissary/executor-role.yaml).
		&rbacv1.ClusterRole{ObjectMeta: metaName("executor"),
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"create", "patch"}}}},
	} {
		if err := admin.Create(ctx, o); err != nil {
			return 0, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	log := suiteLogger()
	hook, err = harness.StartWebhook(harness.WebhookOptions{
		Dir: filepath.Join(dir, "webhook"), Kubeconfig: webhookKubeconfig, Mode: webhook.ModeEnforce,
		ControllerUsernames: []string{controllerUser}, Log: log,
	})
	if err != nil {
		return 0, err
	}
	defer hook.Stop()
	return m.Run(), nil
}

func userKubeconfig(env *envtest.Environment, dir string, u envtest.User) (string, error) {
	user, err := env.AddUser(u, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, u.Name+".kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// suiteLogger discards logs unless TEST_VERBOSE is set.
func suiteLogger() logr.Logger {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zap.New(zap.UseDevMode(true))
	}
	return logr.Discard()
}
