package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// syncedSource stands in for the informer cache: already synced, running until stopped.
type syncedSource struct{}

func (syncedSource) Start(ctx context.Context) error           { <-ctx.Done(); return nil }
func (syncedSource) WaitForCacheSync(ctx context.Context) bool { return true }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tlsServer starts serve on free loopback ports with a fresh CA and returns a client that trusts
// it, the webhook's base URL, the probe base URL and the function that stops the server.
type tlsServer struct {
	client  *http.Client
	url     string
	probes  string
	cancel  context.CancelFunc
	done    chan error
	caPool  *x509.CertPool
	address string
}

func startTLSServer(t *testing.T, mod func(*Options)) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	require.NoError(t, ca.WriteServing(dir, "127.0.0.1", "localhost"))
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.PEM))

	o := Options{
		CertDir:                dir,
		Host:                   "127.0.0.1",
		Port:                   freePort(t),
		HealthProbeBindAddress: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		MetricsBindAddress:     "",
		Log:                    testr.New(t),
	}
	o.MetricsBindAddress = o.HealthProbeBindAddress
	if mod != nil {
		mod(&o)
	}
	o.setDefaults()
	require.NoError(t, o.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	s := &tlsServer{
		client:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}},
		address: net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
		url:     "https://" + net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
		probes:  "http://" + o.HealthProbeBindAddress,
		cancel:  cancel,
		done:    make(chan error, 1),
		caPool:  pool,
	}
	go func() { s.done <- serve(ctx, o, resourcePods(), nil, syncedSource{}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	require.Eventually(t, func() bool { return s.status(t, "/readyz") == http.StatusOK }, 10*time.Second, 20*time.Millisecond, "server becomes ready")
	return s
}

// status returns the HTTP status of a probe path, or 0 when the request fails.
func (s *tlsServer) status(t *testing.T, path string) int {
	resp, err := http.Get(s.probes + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// reply is the part of an HTTP response that review's callers check; review reads and closes the
// body, so it never hands out a response whose body is already closed.
type reply struct {
	StatusCode int
	Proto      string
	TLS        *tls.ConnectionState
}

func (s *tlsServer) review(t *testing.T, body []byte) (reply, *admissionv1.AdmissionResponse) {
	t.Helper()
	resp, err := s.client.Post(s.url+TaskResultPath, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.NotNil(t, out.Response)
	return reply{StatusCode: resp.StatusCode, Proto: resp.Proto, TLS: resp.TLS}, out.Response
}

func TestServerAnswersReviewsOverTLS(t *testing.T) {
	s := startTLSServer(t, nil)
	body := reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil)
	resp, out := s.review(t, body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "HTTP/1.1", resp.Proto, "HTTP/2 is off by default")
	assert.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	assert.Equal(t, "c0ffee", string(out.UID))
	assert.JSONEq(t, `[{"op":"replace","path":"/metadata/labels/workflows.argoproj.io~1report-outputs-completed","value":"true"}]`, string(out.Patch))

	assert.Equal(t, http.StatusOK, s.status(t, "/healthz"))
	metrics, err := http.Get(s.probes + "/metrics")
	require.NoError(t, err)
	defer metrics.Body.Close()
	text, err := io.ReadAll(metrics.Body)
	require.NoError(t, err)
	assert.Contains(t, string(text), `argo_completion_webhook_decisions_total{kind="taskresult",mode="enforce",rule="A1"}`)
	assert.Contains(t, string(text), `controller_runtime_webhook_requests_total{code="200",webhook="/mutate-argoproj-io-v1alpha1-workflowtaskresult"}`)
}

func TestServerRefusesOldTLSAndPlaintext(t *testing.T) {
	s := startTLSServer(t, nil)
	_, err := tls.Dial("tcp", s.address, &tls.Config{RootCAs: s.caPool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}) //nolint:gosec // offers only TLS 1.0-1.1, to prove they are refused
	assert.Error(t, err, "TLS 1.1 is refused")

	// net/http answers a request that reaches a TLS listener in plain text with a fixed 400 and
	// closes the connection, before any handler runs.
	resp, err := http.Post("http://"+s.address+TaskResultPath, "application/json", bytes.NewReader([]byte("{}")))
	require.NoError(t, err, "plain HTTP gets an answer, not a reset")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP gets Go's TLS-required 400, never an admission answer")
	assert.Equal(t, "Client sent an HTTP request to an HTTPS server.\n", string(body))
}

func TestServerOffersHTTP2OnlyWhenEnabled(t *testing.T) {
	s := startTLSServer(t, func(o *Options) { o.EnableHTTP2 = true })
	resp, _ := s.review(t, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Equal(t, "HTTP/2.0", resp.Proto)
}

func TestServerShutdownTurnsReadinessOffAndKeepsServing(t *testing.T) {
	s := startTLSServer(t, func(o *Options) { o.ShutdownDelay = 2 * time.Second })
	body := reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil)

	start := time.Now()
	s.cancel()
	require.Eventually(t, func() bool { return s.status(t, "/readyz") == http.StatusServiceUnavailable }, time.Second, 10*time.Millisecond, "readiness drops at once")
	// Within the delay, new connections are still accepted and answered.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool}}}
	resp, err := fresh.Post(s.url+TaskResultPath, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Less(t, time.Since(start), 2*time.Second, "answered during the shutdown delay")

	select {
	case err := <-s.done:
		assert.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), 2*time.Second, "stopped only after the delay")
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after the delay")
	}
	s.done <- nil // for the cleanup
}
