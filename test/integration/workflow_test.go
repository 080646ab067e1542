package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// runningWorkflow creates a Workflow with one resource Pod node, as the controller has it while the
// pod runs (phase Running, completed "false"), and returns it with its node.
func runningWorkflow(t *testing.T, suffix string) (*unstructured.Unstructured, node) {
	t.Helper()
	n := newNode(t, suffix, false)
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Workflow",
		"metadata": map[string]any{
			"name":      n.workflow,
			"namespace": argoNS,
			"labels":    map[string]any{webhook.LabelCompleted: "false", webhook.LabelPhase: "Running"},
		},
		"spec": map[string]any{"entrypoint": "main", "templates": []any{map[string]any{"name": "main",
			"resource": map[string]any{"action": "create", "manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: cm-\n"},
			"outputs":  map[string]any{"parameters": []any{map[string]any{"name": "name", "valueFrom": map[string]any{"jsonPath": "{.metadata.name}"}}}}}}},
		"status": map[string]any{
			"phase":      "Running",
			"startedAt":  "2024-04-26T10:50:27Z",
			"finishedAt": nil,
			"nodes": map[string]any{
				n.id: map[string]any{"id": n.id, "name": n.workflow, "type": "Pod", "phase": "Running", "templateName": "main", "startedAt": "2024-04-26T10:50:27Z"},
			},
			"taskResultsCompletionStatus": map[string]any{n.id: false},
		},
	}}
	require.NoError(t, admin.Create(context.Background(), wf))
	t.Cleanup(func() { _ = admin.Delete(context.Background(), wf) })
	return wf, n
}

// toStuckShape turns the workflow into what controller v3.5.4's markWorkflowPhase writes for
// #12985: phase Succeeded, node Succeeded, completed still "false", finishedAt null.
func toStuckShape(wf *unstructured.Unstructured, n node) {
	labels := wf.GetLabels()
	labels[webhook.LabelPhase] = "Succeeded"
	wf.SetLabels(labels)
	st := wf.Object["status"].(map[string]any)
	st["phase"] = "Succeeded"
	st["conditions"] = []any{map[string]any{"type": "PodRunning", "status": "False"}}
	st["nodes"].(map[string]any)[n.id] = map[string]any{"id": n.id, "name": n.workflow, "type": "Pod", "phase": "Succeeded",
		"templateName": "main", "startedAt": "2024-04-26T10:50:27Z", "finishedAt": "2024-04-26T10:50:41Z",
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "name", "value": "cm-4xq9z"}}, "exitCode": "0"}}
}

func getWorkflow(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(workflowGVK)
	require.NoError(t, admin.Get(context.Background(), client.ObjectKey{Namespace: argoNS, Name: name}, u))
	return u
}

func TestControllerUpdateInStuckShapeIsCompleted(t *testing.T) {
	wf, n := runningWorkflow(t, "b2")
	pod := createPod(t, argoNS, n)
	terminatePod(t, pod)
	controller, _ := clientAs(t, controllerSA, "")

	toStuckShape(wf, n)
	require.NoError(t, controller.Update(context.Background(), wf))

	got := getWorkflow(t, n.workflow)
	assert.Equal(t, "true", got.GetLabels()[webhook.LabelCompleted])
	assert.Equal(t, "Succeeded", got.GetLabels()[webhook.LabelPhase])
	finishedAt, _, _ := unstructured.NestedString(got.Object, "status", "finishedAt")
	assert.Equal(t, "2024-04-26T10:50:41Z", finishedAt)
	conditions, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	assert.Contains(t, conditions, map[string]any{"type": "Completed", "status": "True"})
	assert.Contains(t, conditions, map[string]any{"type": "PodRunning", "status": "False"}, "other conditions kept")
	done, _, _ := unstructured.NestedBool(got.Object, "status", "taskResultsCompletionStatus", n.id)
	assert.True(t, done)
	outputs, _, _ := unstructured.NestedSlice(got.Object, "status", "nodes", n.id, "outputs", "parameters")
	assert.Equal(t, []any{map[string]any{"name": "name", "value": "cm-4xq9z"}}, outputs, "node outputs untouched")
	assert.Equal(t, wf.Object["spec"], got.Object["spec"], "spec untouched")
}

func TestControllerUpdatesOutsideTheStuckShapeAreUntouched(t *testing.T) {
	cases := map[string]func(wf *unstructured.Unstructured, n node){
		"the pod's executor is still running": func(wf *unstructured.Unstructured, n node) {},
		"finishedAt already set": func(wf *unstructured.Unstructured, n node) {
			wf.Object["status"].(map[string]any)["finishedAt"] = "2024-04-26T10:50:42Z"
		},
		"a node still running": func(wf *unstructured.Unstructured, n node) {
			wf.Object["status"].(map[string]any)["nodes"].(map[string]any)["extra"] = map[string]any{"id": "extra", "type": "Pod", "phase": "Running"}
		},
		"a daemoned node": func(wf *unstructured.Unstructured, n node) {
			wf.Object["status"].(map[string]any)["nodes"].(map[string]any)["extra"] = map[string]any{"id": "extra", "type": "Pod", "phase": "Succeeded", "daemoned": true, "finishedAt": "2024-04-26T10:50:41Z"}
		},
		"the phase label differs from status.phase": func(wf *unstructured.Unstructured, n node) {
			l := wf.GetLabels()
			l[webhook.LabelPhase] = "Failed"
			wf.SetLabels(l)
		},
	}
	i := 0
	for name, breakIt := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			wf, n := runningWorkflow(t, fmt.Sprintf("b2-broken-%d", i))
			pod := createPod(t, argoNS, n)
			if name != "the pod's executor is still running" {
				terminatePod(t, pod)
			}
			controller, _ := clientAs(t, controllerSA, "")
			toStuckShape(wf, n)
			breakIt(wf, n)
			require.NoError(t, controller.Update(context.Background(), wf))
			got := getWorkflow(t, n.workflow)
			assert.Equal(t, "false", got.GetLabels()[webhook.LabelCompleted])
			done, _, _ := unstructured.NestedBool(got.Object, "status", "taskResultsCompletionStatus", n.id)
			assert.False(t, done)
		})
	}
}

func TestRunningShapeOfNewerControllersIsUntouched(t *testing.T) {
	wf, n := runningWorkflow(t, "v355-running")
	pod := createPod(t, argoNS, n)
	terminatePod(t, pod)
	controller, _ := clientAs(t, controllerSA, "")
	// v3.5.5+: the pod Succeeded but the node is held Running; the controller rewrites progress.
	wf.Object["status"].(map[string]any)["progress"] = "0/1"
	require.NoError(t, controller.Update(context.Background(), wf))
	got := getWorkflow(t, n.workflow)
	assert.Equal(t, "false", got.GetLabels()[webhook.LabelCompleted])
	assert.Equal(t, "Running", got.GetLabels()[webhook.LabelPhase])
}

func TestRetryThatRemovesTheCompletedLabelKeepsItRemoved(t *testing.T) {
	wf, n := runningWorkflow(t, "retry")
	pod := createPod(t, argoNS, n)
	terminatePod(t, pod)
	controller, _ := clientAs(t, controllerSA, "")
	toStuckShape(wf, n)
	require.NoError(t, controller.Update(context.Background(), wf))
	wf = getWorkflow(t, n.workflow)
	require.Equal(t, "true", wf.GetLabels()[webhook.LabelCompleted], "precondition: completed by B2")

	// argo retry (server, as argo-server): remove completed and archiving labels, phase Running.
	labels := wf.GetLabels()
	delete(labels, webhook.LabelCompleted)
	labels[webhook.LabelPhase] = "Running"
	wf.SetLabels(labels)
	st := wf.Object["status"].(map[string]any)
	st["phase"] = "Running"
	st["finishedAt"] = nil
	require.NoError(t, controller.Update(context.Background(), wf))
	got := getWorkflow(t, n.workflow)
	_, has := got.GetLabels()[webhook.LabelCompleted]
	assert.False(t, has, "the completed label stays removed")
}
