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
// counted in argo_completion_webhook_decisions_total like any other request. The request and
// decision counts are the suite's server's own (its registry;
// TestEachServerCountsOnlyTheRequestsItAnswered), not those of other servers in the process.
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
	// An update or patch can be admitted twice: the API server retries it against a newer copy of
	// the object when the one it started from was stale (GuaranteedUpdate), and calls the webhook
	// again. Creates are admitted once. So the counts are exact up to such retries (rare: none or
	// one in most runs), and any write the filter should have kept away (100 placeholders, 100
	// label patches, 499 workflow updates) would break the upper bounds.
	retries := float64(pods / 10)
	inRange := func(got, want, slack float64, msg string) {
		t.Helper()
		assert.True(t, got >= want && got <= want+slack, "%s: got %.0f, want %.0f (up to %.0f more from API-server retries)", msg, got, want, slack)
	}
	inRange(wfCalls, 1, 1, "only the stuck-shape workflow update reaches the webhook")
	inRange(trCalls, float64(2*pods), retries, "only ReportOutputs' two requests (the rejected Create and the outputs patch) reach the webhook")
	inRange(a1, float64(2*resourcePods), retries, "both ReportOutputs requests of a resource pod are decided A1, the rejected Create included")
	inRange(none, float64(2*(pods-resourcePods)), retries, "both ReportOutputs requests of a container pod are left to its wait container")
}
