package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// startAnother starts a second webhook server in mode and points the configuration at it until
// the test ends.
func startAnother(t *testing.T, mode webhook.Mode) *harness.Webhook {
	t.Helper()
	s, err := startWebhook(t.TempDir(), mode)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, harness.Register(ctx, admin, s, argoNS))
	t.Cleanup(func() { require.NoError(t, harness.Register(ctx, admin, enforce, argoNS)) })
	return s
}

func TestAuditModePatchesNothingAndWarnsTheClient(t *testing.T) {
	audit := startAnother(t, webhook.ModeAudit)
	t.Cleanup(audit.Stop)

	n := newNode(t, "audit", false)
	createPod(t, argoNS, n)
	executor, warned := clientAs(t, executorSA, n.pod)
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("x"))))
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "audit mode applies nothing")
	found := false
	for _, w := range warned.All() {
		found = found || (strings.Contains(w, "audit mode: would set") && strings.Contains(w, "rule A1"))
	}
	assert.True(t, found, "the warning reaches the client: %v", warned.All())
	assert.Equal(t, 1.0, scrape(t, audit.Metrics, `argo_completion_webhook_decisions_total{kind="taskresult",mode="audit",rule="A1"}`))
}

func TestWebhookDownWritesStillSucceedUnpatched(t *testing.T) {
	down := startAnother(t, webhook.ModeEnforce)
	down.Stop()

	n := newNode(t, "down", false)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, n.pod)
	start := time.Now()
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("x"))),
		"failurePolicy Ignore: the write succeeds while the webhook is down")
	assert.Less(t, time.Since(start), 3*time.Second, "a refused connection does not wait for the timeout")
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "unpatched")

	wf, wn := runningWorkflow(t, "down-wf")
	controller, _ := clientAs(t, controllerSA, "")
	toStuckShape(wf, wn)
	require.NoError(t, controller.Update(context.Background(), wf), "workflow updates succeed too")
}
