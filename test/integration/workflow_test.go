package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
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
			"labels":    map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: "Running"},
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
	n.wfUID = wf.GetUID() // the pod and task result are owned by this very workflow
	return wf, n
}

// toStuckShape turns the workflow into what controller v3.5.4's markWorkflowPhase writes for
// #12985: phase Succeeded, node Succeeded, completed still "false", finishedAt null.
func toStuckShape(wf *unstructured.Unstructured, n node) {
	labels := wf.GetLabels()
	labels[rules.LabelPhase] = "Succeeded"
	wf.SetLabels(labels)
	st := wf.Object["status"].(map[string]any)
	st["phase"] = "Succeeded"
	st["conditions"] = []any{map[string]any{"type": "PodRunning", "status": "False"}}
	st["nodes"].(map[string]any)[n.id] = map[string]any{"id": n.id, "name": n.workflow, "type": "Pod", "phase": "Succeeded",
		"templateName": "main", "startedAt": "2024-04-26T10:50:27Z", "finishedAt": "2024-04-26T10:50:41Z",
		"outputs": stuckNodeOutputs()}
}

// workflowDeclinedSeries counts the Workflow requests the webhook answered without a change.
const workflowDeclinedSeries = `argo_completion_webhook_decisions_total{kind="workflow",mode="enforce",rule="none"}`

// terminatedLongAgo is when the pods of the B2 tests terminated: past the webhook's 2m grace.
var terminatedLongAgo = 5 * time.Minute

// terminatePodAgo reports every container of the pod terminated ago, as the kubelet would have.
func terminatePodAgo(t *testing.T, pod *corev1.Pod, ago time.Duration) {
	t.Helper()
	at := metav1.NewTime(time.Now().Add(-ago).Truncate(time.Second))
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: at, FinishedAt: at}},
		})
	}
	require.NoError(t, admin.Status().Update(context.Background(), pod))
}

// stuckNodeOutputs are the outputs toStuckShape puts on the node.
func stuckNodeOutputs() map[string]any {
	return map[string]any{"parameters": []any{map[string]any{"name": "name", "value": "cm-4xq9z"}}, "exitCode": "0"}
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
	// The #12985 task result: "false", its outputs already merged into the node. Written before
	// its pod is known to the webhook, so A1 leaves it alone (as during an outage).
	require.NoError(t, admin.Create(context.Background(), taskResult(argoNS, n, "false", stuckNodeOutputs())))
	pod := createPod(t, argoNS, n)
	terminatePodAgo(t, pod, terminatedLongAgo)
	controller, _ := clientAs(t, controllerSA, "")

	toStuckShape(wf, n)
	require.NoError(t, controller.Update(context.Background(), wf))

	got := getWorkflow(t, n.workflow)
	assert.Equal(t, "true", got.GetLabels()[rules.LabelCompleted])
	assert.Equal(t, "Succeeded", got.GetLabels()[rules.LabelPhase])
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
			l[rules.LabelPhase] = "Failed"
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
				terminatePodAgo(t, pod, terminatedLongAgo)
			}
			controller, _ := clientAs(t, controllerSA, "")
			toStuckShape(wf, n)
			breakIt(wf, n)
			declined := scrape(t, enforce.Metrics, workflowDeclinedSeries)
			require.NoError(t, controller.Update(context.Background(), wf))
			got := getWorkflow(t, n.workflow)
			assert.Equal(t, "false", got.GetLabels()[rules.LabelCompleted])
			// The webhook was called and declined: the update was not merely filtered away.
			assert.GreaterOrEqual(t, scrape(t, enforce.Metrics, workflowDeclinedSeries)-declined, 1.0, "the webhook decided this update")
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
	assert.Equal(t, "false", got.GetLabels()[rules.LabelCompleted])
	assert.Equal(t, "Running", got.GetLabels()[rules.LabelPhase])
}

func TestRetryThatRemovesTheCompletedLabelKeepsItRemoved(t *testing.T) {
	wf, n := runningWorkflow(t, "retry")
	pod := createPod(t, argoNS, n)
	terminatePodAgo(t, pod, terminatedLongAgo)
	controller, _ := clientAs(t, controllerSA, "")
	toStuckShape(wf, n)
	require.NoError(t, controller.Update(context.Background(), wf))
	wf = getWorkflow(t, n.workflow)
	require.Equal(t, "true", wf.GetLabels()[rules.LabelCompleted], "precondition: completed by B2")

	// argo retry (server, as argo-server): remove completed and archiving labels, phase Running.
	labels := wf.GetLabels()
	delete(labels, rules.LabelCompleted)
	labels[rules.LabelPhase] = "Running"
	wf.SetLabels(labels)
	st := wf.Object["status"].(map[string]any)
	st["phase"] = "Running"
	st["finishedAt"] = nil
	require.NoError(t, controller.Update(context.Background(), wf))
	got := getWorkflow(t, n.workflow)
	_, has := got.GetLabels()[rules.LabelCompleted]
	assert.False(t, has, "the completed label stays removed")
}

// B2 never completes a workflow while an executor write may still land or while the task result
// at the API server holds outputs its node lacks: the controller would delete the task results
// in the same reconcile and the outputs would be lost.
func TestB2WaitsUntilNoOutputCanBeLost(t *testing.T) {
	late := map[string]any{"parameters": []any{map[string]any{"name": "name", "value": "cm-late"}}, "exitCode": "0"}
	cases := map[string]struct {
		terminatedAgo time.Duration
		taskResult    func(n node) *unstructured.Unstructured // nil: none stored
		wantCompleted string
	}{
		"within the grace after the executors terminated": {
			terminatedAgo: 10 * time.Second,
			taskResult:    func(n node) *unstructured.Unstructured { return taskResult(argoNS, n, "false", stuckNodeOutputs()) },
			wantCompleted: "false",
		},
		"the task result holds outputs the node lacks (the controller has not seen them yet)": {
			terminatedAgo: terminatedLongAgo,
			taskResult:    func(n node) *unstructured.Unstructured { return taskResult(argoNS, n, "false", late) },
			wantCompleted: "false",
		},
		"the task result is already complete at the API server": {
			terminatedAgo: terminatedLongAgo,
			taskResult:    func(n node) *unstructured.Unstructured { return taskResult(argoNS, n, "true", stuckNodeOutputs()) },
			wantCompleted: "false",
		},
		"the node carries the task result's outputs and the grace has passed": {
			terminatedAgo: terminatedLongAgo,
			taskResult:    func(n node) *unstructured.Unstructured { return taskResult(argoNS, n, "false", stuckNodeOutputs()) },
			wantCompleted: "true",
		},
		"the task result no longer exists and the grace has passed": {
			terminatedAgo: terminatedLongAgo,
			wantCompleted: "true",
		},
	}
	i := 0
	for name, tc := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			wf, n := runningWorkflow(t, fmt.Sprintf("b2-lost-%d", i))
			if tc.taskResult != nil {
				// Written before its pod is known to the webhook, so A1 leaves it as it is.
				tr := tc.taskResult(n)
				require.NoError(t, admin.Create(context.Background(), tr))
				t.Cleanup(func() { _ = admin.Delete(context.Background(), tr) })
			}
			pod := createPod(t, argoNS, n)
			terminatePodAgo(t, pod, tc.terminatedAgo)
			controller, _ := clientAs(t, controllerSA, "")
			toStuckShape(wf, n)
			declined := scrape(t, enforce.Metrics, workflowDeclinedSeries)
			require.NoError(t, controller.Update(context.Background(), wf))
			got := getWorkflow(t, n.workflow)
			assert.Equal(t, tc.wantCompleted, got.GetLabels()[rules.LabelCompleted])
			if tc.wantCompleted == "false" {
				assert.GreaterOrEqual(t, scrape(t, enforce.Metrics, workflowDeclinedSeries)-declined, 1.0, "the webhook was called and declined")
			}
			done, _, _ := unstructured.NestedBool(got.Object, "status", "taskResultsCompletionStatus", n.id)
			assert.Equal(t, tc.wantCompleted == "true", done)
		})
	}
}

// The late-writes race, step by step: the first update declines because the late outputs are not
// on the node; once the controller has merged them (its next update), B2 completes the workflow
// and the outputs are on the node.
func TestB2CompletesOnceTheLateOutputsReachTheNode(t *testing.T) {
	wf, n := runningWorkflow(t, "b2-late")
	late := map[string]any{"parameters": []any{map[string]any{"name": "name", "value": "cm-late"}}, "exitCode": "0"}
	tr := taskResult(argoNS, n, "false", late) // before the pod: A1 leaves it alone
	require.NoError(t, admin.Create(context.Background(), tr))
	t.Cleanup(func() { _ = admin.Delete(context.Background(), tr) })
	pod := createPod(t, argoNS, n)
	terminatePodAgo(t, pod, terminatedLongAgo)
	controller, _ := clientAs(t, controllerSA, "")

	toStuckShape(wf, n)
	require.NoError(t, controller.Update(context.Background(), wf))
	wf = getWorkflow(t, n.workflow)
	require.Equal(t, "false", wf.GetLabels()[rules.LabelCompleted], "declined while the outputs are not on the node")

	// The controller's task-result informer catches up: taskResultReconciliation merges them.
	require.NoError(t, unstructured.SetNestedField(wf.Object, late, "status", "nodes", n.id, "outputs"))
	require.NoError(t, controller.Update(context.Background(), wf))
	got := getWorkflow(t, n.workflow)
	assert.Equal(t, "true", got.GetLabels()[rules.LabelCompleted])
	outputs, _, _ := unstructured.NestedMap(got.Object, "status", "nodes", n.id, "outputs")
	assert.Equal(t, late, outputs, "the late outputs are on the node")
}
