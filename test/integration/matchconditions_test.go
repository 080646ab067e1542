package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// registerWithoutMatchConditions registers the shipped configuration at the suite's webhook as an
// API server below the minimum holds it: Kubernetes 1.27 (and 1.28–1.29 with the
// AdmissionWebhookMatchConditions gate off) drops matchConditions when it stores the
// configuration, and 1.26 and older do not know the field. It returns once the API server calls
// the webhook for a write only matchConditions would have kept away: a placeholder task result.
func registerWithoutMatchConditions(ctx context.Context, t *testing.T) {
	t.Helper()
	mwc, err := harness.LoadWebhookConfig()
	require.NoError(t, err)
	for i := range mwc.Webhooks {
		url := enforce.URL + *mwc.Webhooks[i].ClientConfig.Service.Path
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: enforce.CAPEM}
		mwc.Webhooks[i].MatchConditions = nil
	}
	var existing admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, admin.Get(ctx, client.ObjectKey{Name: mwc.Name}, &existing))
	mwc.ResourceVersion = existing.ResourceVersion
	require.NoError(t, admin.Update(ctx, mwc))
	t.Cleanup(func() { require.NoError(t, registerEnforce(context.Background())) })

	series := harness.RequestsSeries(webhook.TaskResultPath)
	before := scrape(t, enforce.Metrics, series)
	placeholder := taskResult(argoNS, newNode(t, "nomc-probe", false), "false", nil)
	require.Eventually(t, func() bool {
		require.NoError(t, admin.Create(ctx, placeholder.DeepCopy(), client.DryRunAll))
		return scrape(t, enforce.Metrics, series) > before
	}, 30*time.Second, 100*time.Millisecond, "the API server never called the webhook for a placeholder")
}

// Below Kubernetes 1.30 the filter of TestOnlyActionableWritesReachTheWebhook is gone: every write
// the rules and selectors match reaches the webhook. The same stream, smaller, shows what that
// costs and that nothing else changes: each extra request is decided from its labels (and, for a
// task result, its outputs) and left untouched; A1 and B2 act where they do behind the filter.
// Counts are lower bounds: the API server runs admission again when it retries an update it first
// tried on a stale cached copy (seen now and then on 1.30.14 and 1.37.2: 51 calls for 50 updates).
func TestWithoutMatchConditionsEveryWriteReachesTheWebhookAndDecisionsHold(t *testing.T) {
	const workflowUpdates, pods = 50, 10
	ctx := context.Background()
	registerWithoutMatchConditions(ctx, t)

	series := harness.RequestsSeries
	workflowB2 := `argo_completion_webhook_decisions_total{kind="workflow",mode="enforce",rule="B2"}`
	trBefore := scrape(t, enforce.Metrics, series(webhook.TaskResultPath))
	wfBefore := scrape(t, enforce.Metrics, series(webhook.WorkflowPath))
	a1Before := scrape(t, enforce.Metrics, decisionsSeries("A1"))
	noneBefore := scrape(t, enforce.Metrics, decisionsSeries("none"))
	b2Before := scrape(t, enforce.Metrics, workflowB2)

	wf, n := runningWorkflow(t, "nomc-stream")
	controller, _ := clientAs(t, controllerSA, "")
	for i := 1; i < workflowUpdates; i++ {
		wf.Object["status"].(map[string]any)["progress"] = fmt.Sprintf("%d/%d", i, workflowUpdates)
		require.NoError(t, controller.Update(ctx, wf))
	}
	toStuckShape(wf, n)
	require.NoError(t, controller.Update(ctx, wf))

	taskResultWrites, resourcePods := 0, 0
	var nodes []node
	for i := range pods {
		wait := i%2 == 0
		if !wait {
			resourcePods++
		}
		pn := newNode(t, fmt.Sprintf("nomc-%d", i), wait)
		createPod(t, argoNS, pn)
		executor, _ := clientAs(t, executorSA, pn.pod)
		taskResultWrites += writeAsArgoexecV35(t, executor, argoNS, pn, map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}})
		nodes = append(nodes, pn)
	}

	trCalls := scrape(t, enforce.Metrics, series(webhook.TaskResultPath)) - trBefore
	wfCalls := scrape(t, enforce.Metrics, series(webhook.WorkflowPath)) - wfBefore
	a1 := scrape(t, enforce.Metrics, decisionsSeries("A1")) - a1Before
	none := scrape(t, enforce.Metrics, decisionsSeries("none")) - noneBefore
	b2 := scrape(t, enforce.Metrics, workflowB2) - b2Before
	writes := float64(workflowUpdates + taskResultWrites)
	fmt.Printf("without matchConditions: %d writes (%d workflow updates, %d task-result requests) -> %.0f admission requests (%.0f workflow, %.0f task result: %.0f rule A1, %.0f none): ratio %.3f\n",
		int(writes), workflowUpdates, taskResultWrites, wfCalls+trCalls, wfCalls, trCalls, a1, none, (wfCalls+trCalls)/writes)
	assert.GreaterOrEqual(t, wfCalls, float64(workflowUpdates), "every controller update reaches the webhook")
	assert.GreaterOrEqual(t, trCalls, float64(taskResultWrites), "every executor request reaches the webhook, placeholders and label patches included")
	assert.GreaterOrEqual(t, b2, 1.0, "B2 completes the stuck-shape update, as behind matchConditions")
	assert.GreaterOrEqual(t, a1, float64(2*resourcePods), "A1 completes both ReportOutputs requests of each resource pod, as behind matchConditions")
	assert.Equal(t, trCalls-a1, none, "every other task-result request is left alone")

	for _, pn := range nodes {
		label, _ := persistedLabel(t, argoNS, pn)
		assert.Equal(t, "true", label, "task result %s", pn.id)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(workflowGVK)
	require.NoError(t, admin.Get(ctx, client.ObjectKey{Namespace: argoNS, Name: n.workflow}, got))
	assert.Equal(t, "true", got.GetLabels()[rules.LabelCompleted], "B2 completed the stuck workflow")
}
