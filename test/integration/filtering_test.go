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

// decisionsSeries is the webhook's decision counter for task results in enforce mode under rule.
func decisionsSeries(rule string) string {
	return `argo_completion_webhook_decisions_total{kind="taskresult",mode="enforce",rule="` + rule + `"}`
}

// The configuration's matchConditions and selectors decide at the API server which writes reach
// the webhook. A realistic stream: 500 controller updates over a workflow's life (only the last
// one in the v3.5.4 stuck shape), and for each of 100 pods the 4 task-result requests of a v3.5
// executor (writeAsArgoexecV35: placeholder Create; ReportOutputs' Create, rejected with
// AlreadyExists, and its merge patch; FinalizeOutput's label patch). Only the stuck-shape update
// and, per pod, the two ReportOutputs requests may arrive: the rejected Create carries outputs and
// label "false", and mutating admission runs before storage rejects it, so it is decided and
// counted in argo_completion_webhook_decisions_total like any other request.
func TestOnlyActionableWritesReachTheWebhook(t *testing.T) {
	const workflowUpdates, pods = 500, 100
	ctx := context.Background()
	series := harness.RequestsSeries
	trBefore := scrape(t, enforce.Metrics, series(webhook.TaskResultPath))
	wfBefore := scrape(t, enforce.Metrics, series(webhook.WorkflowPath))
	a1Before := scrape(t, enforce.Metrics, decisionsSeries("A1"))
	noneBefore := scrape(t, enforce.Metrics, decisionsSeries("none"))

	wf, n := runningWorkflow(t, "stream")
	controller, _ := clientAs(t, controllerSA, "")
	for i := 1; i < workflowUpdates; i++ {
		wf.Object["status"].(map[string]any)["progress"] = fmt.Sprintf("%d/%d", i, workflowUpdates)
		require.NoError(t, controller.Update(ctx, wf))
	}
	toStuckShape(wf, n)
	require.NoError(t, controller.Update(ctx, wf))

	taskResultWrites, resourcePods := 0, 0
	for i := range pods {
		wait := i%2 == 0 // half container pods (wait container), half v3.5.5+ resource pods
		if !wait {
			resourcePods++
		}
		pn := newNode(t, fmt.Sprintf("stream-%d", i), wait)
		createPod(t, argoNS, pn)
		executor, _ := clientAs(t, executorSA, pn.pod)
		taskResultWrites += writeAsArgoexecV35(t, executor, argoNS, pn, map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}})
	}

	trCalls := scrape(t, enforce.Metrics, series(webhook.TaskResultPath)) - trBefore
	wfCalls := scrape(t, enforce.Metrics, series(webhook.WorkflowPath)) - wfBefore
	a1 := scrape(t, enforce.Metrics, decisionsSeries("A1")) - a1Before
	none := scrape(t, enforce.Metrics, decisionsSeries("none")) - noneBefore
	writes := float64(workflowUpdates + taskResultWrites)
	fmt.Printf("filtering: %d writes (%d workflow updates, %d task-result requests of which %d Creates rejected with AlreadyExists) -> %.0f admission requests (%.0f workflow, %.0f task result: %.0f rule A1, %.0f none): ratio %.3f\n",
		int(writes), workflowUpdates, taskResultWrites, pods, wfCalls+trCalls, wfCalls, trCalls, a1, none, (wfCalls+trCalls)/writes)
	assert.Equal(t, 1.0, wfCalls, "only the stuck-shape workflow update reaches the webhook")
	assert.Equal(t, float64(2*pods), trCalls, "only ReportOutputs' two requests (the rejected Create and the outputs patch) reach the webhook")
	assert.Equal(t, float64(2*resourcePods), a1, "both ReportOutputs requests of a resource pod are decided A1, the rejected Create included")
	assert.Equal(t, float64(2*(pods-resourcePods)), none, "both ReportOutputs requests of a container pod are left to its wait container")
}
