package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// cert-manager's CA rollover, reproduced: the CA Issuer's CA is renewed, so a new CA signs the
// next serving certificate. During the overlap the configuration's caBundle holds both CAs, PEM
// concatenated, as cainjector injects a CA bundle; the webhook picks the new certificate up from
// the Secret volume (certwatcher); then the old CA leaves the bundle. Executors keep writing
// throughout, and every write must be admitted and patched.
//
// Each caBundle change makes the API server build a new client, whose first call opens a new TLS
// connection verified against the new bundle; the test waits for that before the next step. The
// old CA is dropped in two steps for the same reason: with the new certificate served, the bundle
// is injected again with the CAs in the other order, which keeps both but forces a new connection,
// so the new certificate is verified against the two-CA bundle too, not only against the last one.
// Last, the control: the old CA alone in caBundle, with the new certificate served, makes the calls
// fail (allowed unpatched, failurePolicy Ignore): so zero unpatched writes above means every call
// was verified and answered.
func TestCertManagerCARolloverServesWithoutFailedCalls(t *testing.T) {
	ctx := context.Background()
	oldCA, err := testcerts.NewCA()
	require.NoError(t, err)
	newCA, err := testcerts.NewCA()
	require.NoError(t, err)
	const ns = "ca-rollover"
	hook, certDir := startSecretServedWebhook(t, ns, oldCA)
	defer hook.Stop()
	defer func() { require.NoError(t, harness.Unregister(ctx, admin)) }()
	addr := hook.URL[len("https://"):]
	served := func(ca *testcerts.CA) bool {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err == nil {
			conn.Close()
		}
		return err == nil
	}
	require.True(t, served(oldCA))
	require.False(t, served(newCA), "the new CA does not verify the first certificate")

	w := startExecutorWrites(ctx, ns, "wf")
	defer w.stop()
	phase := func(name string, d time.Duration) {
		before := w.writes.Load()
		time.Sleep(d)
		require.Greater(t, w.writes.Load()-before, int64(5), "executors kept writing %s", name)
	}
	phase("on the old CA", time.Second)

	injectCABundle(ctx, t, append(append([]byte{}, oldCA.PEM...), newCA.PEM...))
	phase("with both CAs in caBundle", time.Second)

	second, err := newCA.Serving("127.0.0.1")
	require.NoError(t, err)
	rotated := time.Now()
	writeSecretVolume(t, certDir, second)
	require.Eventually(t, func() bool { return served(newCA) }, 15*time.Second, 100*time.Millisecond,
		"the certificate from the new CA is served within 15s, without a restart")
	took := time.Since(rotated)
	injectCABundle(ctx, t, append(append([]byte{}, newCA.PEM...), oldCA.PEM...))
	phase("on the new certificate, both CAs in caBundle", time.Second)

	injectCABundle(ctx, t, newCA.PEM)
	phase("with only the new CA in caBundle", time.Second)
	w.stop()

	fmt.Printf("CA rollover: new certificate served %.1fs after the Secret changed; %d writes, %d failed, %d unpatched\n",
		took.Seconds(), w.writes.Load(), w.failed.Load(), w.unpatched.Load())
	assert.Zero(t, w.failed.Load(), "no write failed")
	assert.Zero(t, w.unpatched.Load(), "every write was patched: no admission call failed")

	// The control: the bundle without the CA of the certificate served. The API server still
	// caches its client for the first bundle, whose kept-alive connection was verified before the
	// rotation and would still be used; a trailing newline makes it a new bundle, so a new client
	// connects, and its handshake fails (the webhook's server logs each refused handshake; the API
	// server retries a failed call a few times).
	setCABundle(ctx, t, append(append([]byte{}, oldCA.PEM...), '\n'))
	i := 0
	unpatched := func() bool {
		i++
		patched, err := writeTaskResult(ctx, ns, "control-"+strconv.Itoa(i))
		require.NoError(t, err, "the write is allowed: failurePolicy Ignore")
		return !patched
	}
	require.Eventually(t, unpatched, 10*time.Second, 20*time.Millisecond, "with only the old CA in caBundle, calls fail")
	for range 3 {
		assert.True(t, unpatched(), "with only the old CA in caBundle, every call fails")
	}
}

// injectCABundle sets a new caBundle on every webhook of the configuration, as cainjector does,
// then waits until the API server has built the client for it: its clients are cached by their
// configuration, caBundle included, and a new one is built at the first call after the change
// (rest_client_transport_create_calls_total counts them), on a new TLS connection.
func injectCABundle(ctx context.Context, t *testing.T, bundle []byte) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(adminCfg)
	require.NoError(t, err)
	before := transportsCreated(ctx, t, cs)
	setCABundle(ctx, t, bundle)
	require.Eventually(t, func() bool { return transportsCreated(ctx, t, cs) > before }, 10*time.Second, 20*time.Millisecond,
		"the API server calls the webhook with the new caBundle")
}

// setCABundle sets caBundle on every webhook of the configuration.
func setCABundle(ctx context.Context, t *testing.T, bundle []byte) {
	t.Helper()
	mwc, err := harness.LoadWebhookConfig()
	require.NoError(t, err)
	var current admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, admin.Get(ctx, client.ObjectKey{Name: mwc.Name}, &current))
	for i := range current.Webhooks {
		current.Webhooks[i].ClientConfig.CABundle = bundle
	}
	require.NoError(t, admin.Update(ctx, &current))
}

// transportsCreated reads the API server's count of the transports its clients have built.
func transportsCreated(ctx context.Context, t *testing.T, cs *kubernetes.Clientset) float64 {
	t.Helper()
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	require.NoError(t, err)
	var n float64
	for line := range bytes.Lines(raw) {
		if rest, ok := strings.CutPrefix(string(line), "rest_client_transport_create_calls_total{"); ok {
			_, value, _ := strings.Cut(rest, "} ")
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			require.NoError(t, err)
			n += v
		}
	}
	return n
}
