// Package integration runs the webhook behind a real kube-apiserver v1.37.2 and etcd: the API
// server calls it through the shipped MutatingWebhookConfiguration (deploy/), applies its patches
// and persists them. Nothing here is faked: requests come from the API server's admission chain.
package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
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
	scheme     = runtime.NewScheme()
	caPEM      []byte
	kubeconfig string // the webhook's own kubeconfig: a user that may only read pods
	enforce    *server
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
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return 0, err
		}
	}
	var err error
	env, adminCfg, err = controlplane.StartEnv()
	if err != nil {
		return 0, err
	}
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
	ca, err := testcerts.NewCA()
	if err != nil {
		return 0, err
	}
	if err := ca.WriteServing(filepath.Join(dir, "certs"), "127.0.0.1"); err != nil {
		return 0, err
	}
	caPEM = ca.PEM
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
	enforce, err = startServer(filepath.Join(dir, "certs"), webhook.ModeEnforce)
	if err != nil {
		return 0, err
	}
	defer enforce.stop()
	if err := registerWebhook(ctx, enforce.url); err != nil {
		return 0, err
	}
	if err := waitCalled(ctx, enforce); err != nil {
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
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
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

// server is a webhook server started with webhook.Run, the function the binary runs.
type server struct {
	url     string
	metrics string
	cancel  context.CancelFunc
	done    chan error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer runs webhook.Run on free loopback ports with the webhook's own kubeconfig and
// waits until it is ready (TLS serving and pod cache synced).
func startServer(certDir string, mode webhook.Mode) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	probe, err := freePort()
	if err != nil {
		return nil, err
	}
	probes := "127.0.0.1:" + strconv.Itoa(probe)
	opts := webhook.Options{
		CertDir:                certDir,
		Host:                   "127.0.0.1",
		Port:                   port,
		HealthProbeBindAddress: probes,
		MetricsBindAddress:     probes,
		Kubeconfig:             kubeconfig,
		Mode:                   mode,
		ControllerUsernames:    []string{controllerSA},
		Log:                    logr.Discard(),
	}
	if os.Getenv("TEST_VERBOSE") != "" {
		opts.Log = zap.New(zap.UseDevMode(true))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{
		url:     "https://127.0.0.1:" + strconv.Itoa(port),
		metrics: "http://" + probes + "/metrics",
		cancel:  cancel,
		done:    make(chan error, 1),
	}
	go func() { s.done <- webhook.Run(ctx, opts) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			cancel()
			return nil, fmt.Errorf("webhook exited before it was ready: %w", err)
		default:
		}
		resp, err := http.Get("http://" + probes + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	return nil, fmt.Errorf("webhook not ready within 30s")
}

func (s *server) stop() {
	s.cancel()
	<-s.done
}

// loadWebhookConfig reads the shipped configuration from deploy/.
func loadWebhookConfig() (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, "deploy", "mutatingwebhookconfiguration.yaml"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&mwc); err != nil {
		return nil, fmt.Errorf("decoding deploy/mutatingwebhookconfiguration.yaml: %w", err)
	}
	return &mwc, nil
}

// registerWebhook creates (or repoints) the shipped configuration at a local server: only
// clientConfig changes, to the server's URL and the test CA.
func registerWebhook(ctx context.Context, baseURL string) error {
	mwc, err := loadWebhookConfig()
	if err != nil {
		return err
	}
	for i := range mwc.Webhooks {
		path := *mwc.Webhooks[i].ClientConfig.Service.Path
		url := baseURL + path
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	}
	var existing admissionregistrationv1.MutatingWebhookConfiguration
	err = admin.Get(ctx, client.ObjectKey{Name: mwc.Name}, &existing)
	switch {
	case err == nil:
		mwc.ResourceVersion = existing.ResourceVersion
		err = admin.Update(ctx, mwc)
	default:
		err = admin.Create(ctx, mwc)
	}
	if err != nil {
		return fmt.Errorf("registering the webhook configuration: %w", err)
	}
	return nil
}

// waitCalled waits until the API server calls s for task results: it follows configuration
// changes through an informer, so a new URL takes effect a moment after the update.
func waitCalled(ctx context.Context, s *server) error {
	series := `controller_runtime_webhook_requests_total{code="200",webhook="` + webhook.TaskResultPath + `"}`
	before, err := scrapeValue(s.metrics, series)
	if err != nil {
		return err
	}
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "probe", "namespace": argoNS, "labels": map[string]any{webhook.LabelWorkflow: "probe"}},
		"outputs":  map[string]any{},
	}}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := admin.Create(ctx, probe.DeepCopy(), client.DryRunAll); err != nil {
			return fmt.Errorf("dry-run probe: %w", err)
		}
		if now, err := scrapeValue(s.metrics, series); err == nil && now > before {
			return nil
		}
	}
	return fmt.Errorf("the API server did not call %s within 30s", s.url)
}
