package integration

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// scrape returns the value of one series from a /metrics URL (0 when not yet exposed).
func scrape(t *testing.T, url, series string) float64 {
	t.Helper()
	v, err := harness.Scrape(url, series)
	require.NoError(t, err)
	return v
}

// Every server the suite starts runs in this process, and each has a metrics registry of its
// own (harness.StartWebhook), so the request and decision counts a test reads from one server's
// /metrics are those of the requests the API server sent to that server: a second server running
// beside it, not registered, counts none of them.
func TestEachServerCountsOnlyTheRequestsItAnswered(t *testing.T) {
	other, err := startWebhook(t.TempDir(), webhook.ModeEnforce)
	require.NoError(t, err)
	t.Cleanup(other.Stop)
	series := harness.RequestsSeries(webhook.TaskResultPath)
	before, a1Before := scrape(t, enforce.Metrics, series), scrape(t, enforce.Metrics, decisionsSeries("A1"))

	n := newNode(t, "own-metrics", false)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, n.pod)
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("x"))))
	v, _ := persistedLabel(t, argoNS, n)
	require.Equal(t, "true", v, "the registered server patched the create")

	assert.Equal(t, 1.0, scrape(t, enforce.Metrics, series)-before, "the registered server answered the create (creates are admitted once)")
	assert.Zero(t, scrape(t, other.Metrics, series), "the server beside it answered nothing")
	assert.Equal(t, 1.0, scrape(t, enforce.Metrics, decisionsSeries("A1"))-a1Before, "the registered server decided the create A1")
	assert.Zero(t, scrape(t, other.Metrics, decisionsSeries("A1")), "the server beside it decided nothing")
}
