package deploy

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// writeSecretVolume lays files out as the kubelet mounts a Secret volume: a timestamped directory,
// a ..data symlink to it swapped atomically on every update, and one symlink per key through
// ..data. This is how cert-manager's renewed Secret reaches the webhook's --cert-dir.
func writeSecretVolume(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := filepath.Join(dir, fmt.Sprintf("..%d", time.Now().UnixNano()))
	require.NoError(t, os.MkdirAll(ts, 0o755))
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(ts, name), data, 0o600))
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	require.NoError(t, os.Symlink(filepath.Base(ts), tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			require.NoError(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
}

// servedSerial returns the serial number of the certificate the server at addr presents.
func servedSerial(addr string) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reading the served certificate
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// cert-manager's hand-off, reproduced: the CA issuer's Secret (ca.crt, tls.crt with the chain,
// tls.key) mounted at --cert-dir, ca.crt injected into the configuration's caBundle as cainjector
// does, then the certificate renewed from the same CA while executors keep writing.
func TestCertManagerSecretServesAndRotatesWithoutFailedCalls(t *testing.T) {
	ctx := context.Background()
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	const ns = "handoff"
	hook, certDir := startSecretServedWebhook(t, ns, ca)
	defer hook.Stop()
	defer func() { require.NoError(t, harness.Unregister(ctx, admin)) }()
	addr := hook.URL[len("https://"):]
	before, err := servedSerial(addr)
	require.NoError(t, err)

	// Executors keep writing #12985 task results, one after another, through the rotation.
	w := startExecutorWrites(ctx, ns, "wf")
	defer w.stop()

	time.Sleep(2 * time.Second)
	second, err := ca.Serving("127.0.0.1")
	require.NoError(t, err)
	rotated := time.Now()
	writeSecretVolume(t, certDir, second)
	var after string
	require.Eventually(t, func() bool {
		after, err = servedSerial(addr)
		return err == nil && after != before
	}, 15*time.Second, 100*time.Millisecond, "the renewed certificate is served within 15s, without a restart")
	took := time.Since(rotated)
	time.Sleep(2 * time.Second) // keep writing on the new certificate
	w.stop()

	fmt.Printf("rotation: new certificate served %.1fs after the Secret changed; %d writes, %d failed, %d unpatched\n",
		took.Seconds(), w.writes.Load(), w.failed.Load(), w.unpatched.Load())
	assert.Greater(t, w.writes.Load(), int64(20))
	assert.Zero(t, w.failed.Load(), "no write failed")
	assert.Zero(t, w.unpatched.Load(), "every write was patched: no admission call failed")
}

// executorWrites creates, one after another until stopped, a workflow pod and its #12985 task
// result, as executors keep doing whatever happens to the webhook's certificates, and counts the
// task-result writes, those that failed and those the webhook did not patch.
type executorWrites struct {
	writes, failed, unpatched atomic.Int64
	// stop stops the writes and waits for the last one; it may be called again.
	stop func()
}

func startExecutorWrites(ctx context.Context, ns, prefix string) *executorWrites {
	w := &executorWrites{}
	quit, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.stop = func() { once.Do(func() { close(quit) }); <-done }
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			w.writes.Add(1)
			patched, err := writeTaskResult(ctx, ns, prefix+"-"+strconv.Itoa(i))
			switch {
			case err != nil:
				w.failed.Add(1)
			case !patched:
				w.unpatched.Add(1)
			}
		}
	}()
	return w
}

// writeTaskResult creates node's pod, then its task result as a v3.5.4 resource pod's executor
// writes it (label "false", outputs), and says whether the webhook patched the label to "true".
func writeTaskResult(ctx context.Context, ns, node string) (patched bool, err error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-main", Namespace: ns,
			Labels: map[string]string{rules.LabelWorkflow: "wf"}, Annotations: map[string]string{rules.AnnotationNodeID: node}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "argoexec"}}},
	}
	if err := admin.Create(ctx, pod); err != nil {
		return false, err
	}
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": node, "namespace": ns, "labels": map[string]any{
			rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}},
	}}
	if err := admin.Create(ctx, tr); err != nil {
		return false, err
	}
	return tr.GetLabels()[rules.LabelReportOutputsCompleted] == "true", nil
}

// startSecretServedWebhook creates namespace ns and starts the webhook serving a certificate from
// ca out of a Secret-style volume (tls.crt, tls.key, ca.crt) at the returned directory, with
// ca.crt injected into the configuration's caBundle as cainjector does, and registers it.
func startSecretServedWebhook(t *testing.T, ns string, ca *testcerts.CA) (*harness.Webhook, string) {
	t.Helper()
	ctx := context.Background()
	first, err := ca.Serving("127.0.0.1")
	require.NoError(t, err)
	certDir := filepath.Join(t.TempDir(), "certs")
	require.NoError(t, os.MkdirAll(certDir, 0o755))
	writeSecretVolume(t, certDir, first)
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	hook, err := harness.StartWebhook(harness.WebhookOptions{Dir: t.TempDir(), RESTConfig: adminCfg, Mode: webhook.ModeEnforce,
		CertDir: certDir, CAPEM: first["ca.crt"]})
	require.NoError(t, err)
	if err := harness.Register(ctx, admin, hook, ns); err != nil {
		hook.Stop()
		require.NoError(t, err, "the API server calls the webhook with the injected ca.crt")
	}
	return hook, certDir
}
