package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// The configuration's matchConditions and selectors decide at the API server which writes reach
// the webhook. A realistic stream: 500 controller updates over a workflow's life (only the last
// one in the v3.5.4 stuck shape), and the executor's 3 writes for each of 100 pods (placeholder,
// outputs, label) → only the stuck-shape update and the 100 outputs writes may arrive.
func TestOnlyActionableWritesReachTheWebhook(t *testing.T) {
	const workflowUpdates, pods = 500, 100
	ctx := context.Background()
	series := harness.RequestsSeries
	trBefore := scrape(t, enforce.Metrics, series(webhook.TaskResultPath))
	wfBefore := scrape(t, enforce.Metrics, series(webhook.WorkflowPath))

	wf, n := runningWorkflow(t, "stream")
	controller, _ := clientAs(t, controllerSA, "")
	for i := 1; i < workflowUpdates; i++ {
		wf.Object["status"].(map[string]any)["progress"] = fmt.Sprintf("%d/%d", i, workflowUpdates)
		require.NoError(t, controller.Update(ctx, wf))
	}
	toStuckShape(wf, n)
	require.NoError(t, controller.Update(ctx, wf))

	for i := range pods {
		pn := newNode(t, fmt.Sprintf("stream-%d", i), i%2 == 0) // half container pods, half resource pods
		createPod(t, argoNS, pn)
		executor, _ := clientAs(t, executorSA, pn.pod)
		require.NoError(t, executor.Create(ctx, taskResult(argoNS, pn, "false", nil)))
		mergePatch(t, executor, argoNS, pn, `{"outputs":{"parameters":[{"name":"p","value":"v"}]}}`)
		mergePatch(t, executor, argoNS, pn, `{"metadata":{"labels":{"workflows.argoproj.io/report-outputs-completed":"true"}}}`)
	}

	trCalls := scrape(t, enforce.Metrics, series(webhook.TaskResultPath)) - trBefore
	wfCalls := scrape(t, enforce.Metrics, series(webhook.WorkflowPath)) - wfBefore
	writes := float64(workflowUpdates + 3*pods)
	fmt.Printf("filtering: %d writes (%d workflow updates, %d task-result writes) -> %.0f admission requests (%.0f workflow, %.0f task result): ratio %.3f\n",
		int(writes), workflowUpdates, 3*pods, wfCalls+trCalls, wfCalls, trCalls, (wfCalls+trCalls)/writes)
	assert.Equal(t, 1.0, wfCalls, "only the stuck-shape workflow update reaches the webhook")
	assert.Equal(t, float64(pods), trCalls, "only the outputs-bearing task-result writes reach the webhook")
}
