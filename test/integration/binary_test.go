package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// The binary, started with --cert-dir and --kubeconfig, answers the #12985 create with exactly
// one operation, and shuts down cleanly on SIGTERM.
func TestBinaryAnswersTheV354CreateWithOneOperation(t *testing.T) {
	dir := t.TempDir()
	bin := buildBinary(t)
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	require.NoError(t, ca.WriteServing(filepath.Join(dir, "certs"), "127.0.0.1"))
	n := newNode(t, "binary", false)
	createPod(t, argoNS, n)

	port, err := harness.FreePort()
	require.NoError(t, err)
	probe, err := harness.FreePort()
	require.NoError(t, err)
	probes := "127.0.0.1:" + strconv.Itoa(probe)
	cmd, exited := startBinary(t, bin, filepath.Join(dir, "certs"), port, probe)

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.PEM))
	https := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for name, tc := range map[string]struct {
		label string
		op    string
	}{
		"label false is replaced": {label: "false", op: "replace"},
		"label absent is added":   {label: "", op: "add"},
	} {
		t.Run(name, func(t *testing.T) {
			obj := taskResult(argoNS, n, tc.label, resourceOutputs("pi-x2"))
			raw, err := json.Marshal(map[string]any{
				"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
				"request": map[string]any{
					"uid":       "5e1f-12985",
					"kind":      map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "WorkflowTaskResult"},
					"resource":  map[string]any{"group": "argoproj.io", "version": "v1alpha1", "resource": "workflowtaskresults"},
					"namespace": argoNS, "name": n.id, "operation": "CREATE",
					"userInfo": map[string]any{"username": executorSA},
					"object":   obj.Object,
				},
			})
			require.NoError(t, err)
			resp, err := https.Post("https://127.0.0.1:"+strconv.Itoa(port)+"/mutate-argoproj-io-v1alpha1-workflowtaskresult", "application/json", bytes.NewReader(raw))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var review admissionv1.AdmissionReview
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&review))
			assert.Equal(t, "5e1f-12985", string(review.Response.UID))
			assert.True(t, review.Response.Allowed)
			assert.JSONEq(t, `[{"op":"`+tc.op+`","path":"/metadata/labels/workflows.argoproj.io~1report-outputs-completed","value":"true"}]`, string(review.Response.Patch))
		})
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return harness.HTTPStatus("http://"+probes+"/readyz") == http.StatusServiceUnavailable }, 2*time.Second, 20*time.Millisecond, "readiness off at once")
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status 0 after SIGTERM")
	case <-time.After(15 * time.Second):
		t.Fatal("binary did not exit after SIGTERM")
	}
}

// buildBinary builds the webhook binary into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "argo-completion-webhook")
	build := exec.Command("go", "build", "-o", bin, "./cmd/argo-completion-webhook")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// startBinary starts the binary on loopback with the suite's least-privilege kubeconfig and waits
// until it is ready; it is killed when the test ends, and its logs shown if the test failed.
func startBinary(t *testing.T, bin, certDir string, port, probe int) (*exec.Cmd, chan error) {
	t.Helper()
	probes := "127.0.0.1:" + strconv.Itoa(probe)
	logs := &bytes.Buffer{}
	cmd := exec.Command(bin, "--cert-dir", certDir, "--kubeconfig", kubeconfig,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--controller-usernames", controllerSA,
		"--health-probe-bind-address", probes, "--metrics-bind-address", probes, "--shutdown-delay", "1s")
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("webhook logs:\n%s", logs.String())
		}
	})
	require.Eventually(t, func() bool { return harness.HTTPStatus("http://"+probes+"/readyz") == http.StatusOK }, 30*time.Second, 50*time.Millisecond, "ready")
	return cmd, exited
}
