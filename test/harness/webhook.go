package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Webhook is a webhook server run in this process by webhook.Run, on loopback ports, serving a
// certificate from its own throwaway CA.
type Webhook struct {
	// URL is the base URL of the TLS webhook endpoints.
	URL string
	// Metrics is the URL of /metrics; Probes the base URL of /healthz and /readyz. Each server
	// started here has a metrics registry of its own (webhook.Options.Metrics), so its request
	// series (RequestsSeries, controller_runtime_webhook_latency_seconds) and its
	// argo_completion_webhook_* counters count only the requests this server answered and
	// decided, though every server runs in the one process.
	Metrics, Probes string
	// CAPEM is the CA that signed the serving certificate: the caBundle to register.
	CAPEM  []byte
	cancel context.CancelFunc
	done   chan error
}

// WebhookOptions are the options of StartWebhook that vary between suites.
type WebhookOptions struct {
	// Dir is a scratch directory for the certificates.
	Dir string
	// Kubeconfig is the webhook's own kubeconfig (a user that may only read pods).
	Kubeconfig string
	// Mode is enforce or audit.
	Mode webhook.Mode
	// ControllerUsernames are the workflow controller's users (rule B2).
	ControllerUsernames []string
	// B2Grace is rule B2's grace; zero means the default (2m).
	B2Grace time.Duration
	// DisableEvents turns the webhook's Events off.
	DisableEvents bool
	// Log receives the webhook's logs.
	Log logr.Logger
	// CertDir, when set, is served instead of a fresh certificate, and CAPEM is its CA.
	CertDir string
	CAPEM   []byte
	// RESTConfig, when set, is used instead of Kubeconfig.
	RESTConfig *rest.Config
}

// StartWebhook runs webhook.Run and waits until it is ready (TLS serving, pod cache synced).
func StartWebhook(o WebhookOptions) (*Webhook, error) {
	certDir, caPEM := o.CertDir, o.CAPEM
	if certDir == "" {
		ca, err := testcerts.NewCA()
		if err != nil {
			return nil, err
		}
		certDir, caPEM = filepath.Join(o.Dir, "certs"), ca.PEM
		if err := ca.WriteServing(certDir, "127.0.0.1"); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	probe, err := FreePort()
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
		Kubeconfig:             o.Kubeconfig,
		RESTConfig:             o.RESTConfig,
		Mode:                   o.Mode,
		ControllerUsernames:    o.ControllerUsernames,
		B2Grace:                o.B2Grace,
		DisableEvents:          o.DisableEvents,
		ShutdownDelay:          0,
		Log:                    o.Log,
		Metrics:                prometheus.NewRegistry(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Webhook{
		URL:     "https://127.0.0.1:" + strconv.Itoa(port),
		Metrics: "http://" + probes + "/metrics",
		Probes:  "http://" + probes,
		CAPEM:   caPEM,
		cancel:  cancel,
		done:    make(chan error, 1),
	}
	go func() { w.done <- webhook.Run(ctx, opts) }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-w.done:
			cancel()
			return nil, fmt.Errorf("webhook exited before it was ready: %w", err)
		default:
		}
		if HTTPStatus(w.Probes+"/readyz") == http.StatusOK {
			return w, nil
		}
	}
	cancel()
	return nil, fmt.Errorf("webhook not ready within 30s")
}

// Stop stops the server and waits for it to exit.
func (w *Webhook) Stop() {
	w.cancel()
	<-w.done
}

// HTTPStatus returns the status code of a GET, or 0 when the request fails.
func HTTPStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// Scrape returns the value of one series (name{labels} exactly as exposed) from a /metrics URL,
// or 0 when the series has not been exposed yet.
func Scrape(url, series string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, sc.Err()
}

// RequestsSeries is the controller-runtime metric series counting answered requests to path.
func RequestsSeries(path string) string {
	return `controller_runtime_webhook_requests_total{code="200",webhook="` + path + `"}`
}

// LoadWebhookConfig reads the shipped configuration, deploy/base/mutatingwebhookconfiguration.yaml.
func LoadWebhookConfig() (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, "deploy", "base", "mutatingwebhookconfiguration.yaml"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := utilyaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&mwc); err != nil {
		return nil, fmt.Errorf("decoding deploy/base/mutatingwebhookconfiguration.yaml: %w", err)
	}
	return &mwc, nil
}

// Register creates the shipped configuration, or repoints an existing one, at w: only
// clientConfig changes, to w's URL and CA. Then it waits until the API server calls w.
func Register(ctx context.Context, admin client.Client, w *Webhook, probeNamespace string) error {
	if err := register(ctx, admin, w, nil); err != nil {
		return err
	}
	return waitCalled(ctx, admin, w, probeNamespace)
}

// RegisterTaskResultsUnreachable registers the shipped configuration with the Workflow webhook
// pointing at w and the WorkflowTaskResult webhook at a closed port: the executor's writes go
// through unpatched (failurePolicy Ignore), as during an outage of the webhook, while the
// controller's updates still reach w.
func RegisterTaskResultsUnreachable(ctx context.Context, admin client.Client, w *Webhook) error {
	closed, err := FreePort()
	if err != nil {
		return err
	}
	unreachable := map[string]string{webhook.TaskResultPath: "https://127.0.0.1:" + strconv.Itoa(closed) + webhook.TaskResultPath}
	if err := register(ctx, admin, w, unreachable); err != nil {
		return err
	}
	// The API server picks the configuration up through an informer (see Unregister).
	time.Sleep(time.Second)
	return nil
}

// register creates or updates the shipped configuration with each webhook's clientConfig
// pointing at w (at override[path] instead, when set) with w's CA.
func register(ctx context.Context, admin client.Client, w *Webhook, override map[string]string) error {
	mwc, err := LoadWebhookConfig()
	if err != nil {
		return err
	}
	for i := range mwc.Webhooks {
		path := *mwc.Webhooks[i].ClientConfig.Service.Path
		url, ok := override[path]
		if !ok {
			url = w.URL + path
		}
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: w.CAPEM}
	}
	var existing admissionregistrationv1.MutatingWebhookConfiguration
	err = admin.Get(ctx, client.ObjectKey{Name: mwc.Name}, &existing)
	switch {
	case err == nil:
		mwc.ResourceVersion = existing.ResourceVersion
		err = admin.Update(ctx, mwc)
	case apierrors.IsNotFound(err):
		err = admin.Create(ctx, mwc)
	}
	if err != nil {
		return fmt.Errorf("registering the webhook configuration: %w", err)
	}
	return nil
}

// Unregister deletes the configuration; writes are then admitted without any call.
func Unregister(ctx context.Context, admin client.Client) error {
	mwc, err := LoadWebhookConfig()
	if err != nil {
		return err
	}
	if err := admin.Delete(ctx, mwc); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the webhook configuration: %w", err)
	}
	// The API server drops the webhook through an informer; give it the same moment it takes to
	// pick one up (measured by waitCalled at well under a second).
	time.Sleep(time.Second)
	return nil
}

// waitCalled waits until the API server calls w for task results: it follows configuration
// changes through an informer, so a new URL takes effect a moment after the update. It probes
// with server-side dry-run creates, which persist nothing, and counts only w's own requests (its
// registry), so calls still going to the server registered before do not end the wait.
func waitCalled(ctx context.Context, admin client.Client, w *Webhook, ns string) error {
	series := RequestsSeries(webhook.TaskResultPath)
	before, err := Scrape(w.Metrics, series)
	if err != nil {
		return err
	}
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "probe", "namespace": ns, "labels": map[string]any{rules.LabelWorkflow: "probe"}},
		"outputs":  map[string]any{},
	}}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := admin.Create(ctx, probe.DeepCopy(), client.DryRunAll); err != nil {
			return fmt.Errorf("dry-run probe: %w", err)
		}
		if now, err := Scrape(w.Metrics, series); err == nil && now > before {
			return nil
		}
	}
	return fmt.Errorf("the API server did not call %s within 30s", w.URL)
}

// SuiteLogger is the suites' logger: it discards, unless TEST_VERBOSE is set.
func SuiteLogger() logr.Logger {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zap.New(zap.UseDevMode(true))
	}
	return logr.Discard()
}
