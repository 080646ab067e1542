package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// A webhook whose pod cache cannot sync (its user may not list pods, as with broken RBAC) stays
// not ready, and a request that reaches it anyway is allowed unpatched within the lookup
// deadline and counted — never held until the API server's 2 s timeout.
func TestUnsyncedPodCacheAllowsUnpatchedWithinTheDeadline(t *testing.T) {
	user, err := env.AddUser(envtest.User{Name: "webhook-without-rbac"}, nil)
	require.NoError(t, err)
	kc, err := user.KubeConfig()
	require.NoError(t, err)
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kcPath, kc, 0o600))
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	require.NoError(t, ca.WriteServing(filepath.Join(dir, "certs"), "127.0.0.1"))
	port, err := harness.FreePort()
	require.NoError(t, err)
	probe, err := harness.FreePort()
	require.NoError(t, err)
	probes := "http://127.0.0.1:" + strconv.Itoa(probe)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- webhook.Run(ctx, webhook.Options{CertDir: filepath.Join(dir, "certs"), Host: "127.0.0.1", Port: port,
			HealthProbeBindAddress: "127.0.0.1:" + strconv.Itoa(probe), MetricsBindAddress: "127.0.0.1:" + strconv.Itoa(probe),
			Kubeconfig: kcPath, Mode: webhook.ModeEnforce, LookupTimeout: 500 * time.Millisecond, Log: logr.Discard()})
	}()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool { return harness.HTTPStatus(probes+"/healthz") == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second)
	resp, err := http.Get(probes + "/readyz")
	require.NoError(t, err)
	reason, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready: %s", reason)
	assert.Contains(t, string(reason), "pod cache not synced")

	n := newNode(t, "unsynced", false)
	createPod(t, argoNS, n)
	body, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "unsynced", "kind": map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "WorkflowTaskResult"},
		"namespace": argoNS, "name": n.id, "operation": "CREATE", "userInfo": map[string]any{"username": executorSA},
		"object": taskResult(argoNS, n, "false", resourceOutputs("x")).Object}})
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.PEM))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	before := scrape(t, probes+"/metrics", "argo_completion_webhook_lookup_errors_total")
	start := time.Now()
	r, err := client.Post("https://127.0.0.1:"+strconv.Itoa(port)+webhook.TaskResultPath, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer r.Body.Close()
	took := time.Since(start)
	var review admissionv1.AdmissionReview
	require.NoError(t, json.NewDecoder(r.Body).Decode(&review))
	assert.True(t, review.Response.Allowed)
	assert.Nil(t, review.Response.Patch, "unpatched")
	assert.Less(t, took, time.Second, "answered within the 500ms lookup deadline, well under timeoutSeconds")
	assert.Equal(t, before+1, scrape(t, probes+"/metrics", "argo_completion_webhook_lookup_errors_total"), "counted")
}
