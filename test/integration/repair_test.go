package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
)

const repairNS = "repair"

// confirmAfter is the repair's confirmation delay in these tests: the cluster changes only when
// a test changes it, so the delay need not outlast anything.
const confirmAfter = 10 * time.Millisecond

// stuckShape creates a workflow whose Pod node is the task result's (Running while its pod
// exists, the v3.5.5+ stuck shape; Error with its finishedAt when given once the pod is gone),
// optionally the node's pod with container states, and the task result as argoexec v3.5.4 left it
// (outputs, "false", owned by the workflow).
type stuckShape struct {
	name           string
	wait           bool
	pod            string // "" none, "running", "terminated"
	terminatedAgo  time.Duration
	nodeFinishedAt time.Duration // how long ago; 0 for none
	label          string        // task result label; "" for "false"
	noWorkflow     bool          // task result without the workflow label
	namespace      string        // "" for repairNS
}

func (s stuckShape) create(t *testing.T, now time.Time) node {
	t.Helper()
	ctx := context.Background()
	ns := s.namespace
	if ns == "" {
		ns = repairNS
	}
	n := newNode(t, s.name, s.wait)
	nodeStatus := map[string]any{"id": n.id, "type": "Pod", "phase": "Running"}
	if s.pod == "" {
		nodeStatus["phase"] = "Error"
	}
	if s.nodeFinishedAt > 0 {
		nodeStatus["finishedAt"] = now.Add(-s.nodeFinishedAt).UTC().Format(time.RFC3339)
	}
	n = createWorkflow(t, ns, n, "Running", map[string]any{n.id: nodeStatus})
	if s.pod != "" {
		pod := createPod(t, ns, n)
		for _, c := range pod.Spec.Containers {
			st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image}
			if s.pod == "terminated" {
				st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
					StartedAt: metav1.NewTime(now.Add(-time.Hour)), FinishedAt: metav1.NewTime(now.Add(-s.terminatedAgo))}
			} else {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-time.Hour))}
			}
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, st)
		}
		require.NoError(t, admin.Status().Update(ctx, pod))
	}
	label := s.label
	if label == "" {
		label = "false"
	}
	tr := taskResult(ns, n, label, resourceOutputs("x"))
	if s.noWorkflow {
		l := tr.GetLabels()
		delete(l, rules.LabelWorkflow)
		tr.SetLabels(l)
	}
	// Created while no webhook is registered: stuck as it was before the webhook was installed.
	require.NoError(t, admin.Create(ctx, tr))
	return n
}

// createWorkflow creates the node's Workflow, labelled and phased as the controller leaves a
// running one, with those status.nodes, and returns the node with the Workflow's UID, which its
// pod and task result then carry as owner.
func createWorkflow(t *testing.T, ns string, n node, phase string, nodes map[string]any) node {
	t.Helper()
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": n.workflow, "namespace": ns,
			"labels": map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: phase}},
		"spec":   map[string]any{"entrypoint": "main"},
		"status": map[string]any{"phase": phase, "nodes": nodes},
	}}
	require.NoError(t, admin.Create(context.Background(), wf))
	n.wfUID = wf.GetUID()
	return n
}

func repairRun(t *testing.T, apply bool, now func() time.Time, cfg *rest.Config) (repair.Summary, string, string, error) {
	t.Helper()
	var out, progress bytes.Buffer
	sum, err := repair.Run(context.Background(), repair.Options{
		RESTConfig: cfg, Namespace: repairNS, Apply: apply, Now: now, ConfirmAfter: confirmAfter, Out: &out, Err: &progress,
	})
	return sum, out.String(), progress.String(), err
}

// repairNamespace creates namespace ns whose default service account, the executors', may
// create and patch task results, as Argo's executor Role grants (otherwise every stuck node
// there reads R2).
func repairNamespace(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "executor", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "executor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}},
	}))
}

// rowsByWorkflow indexes a report's rows by workflow (one node each in these tests).
func rowsByWorkflow(t *testing.T, out []byte) map[string]repair.Row {
	t.Helper()
	var doc struct{ Rows []repair.Row }
	require.NoError(t, json.Unmarshal(out, &doc), string(out))
	rows := map[string]repair.Row{}
	for _, r := range doc.Rows {
		rows[r.Workflow] = r
	}
	return rows
}

func TestRepairPatchesExactlyTheSafeShapes(t *testing.T) {
	ctx := context.Background()
	repairNamespace(t, repairNS)
	// Stuck before the webhook existed: no configuration while the shapes are made.
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })

	now := time.Now()
	shapes := map[string]struct {
		shape   stuckShape
		cause   string
		verdict string // in the report
		next    string // a fragment of its next step
		repair  bool   // repaired by the first --apply
	}{
		"resource pod terminated long ago": {stuckShape{name: "r-old", pod: "terminated", terminatedAgo: 5 * time.Minute},
			rules.Cause12985, repair.VerdictRepair, "repair --apply sets the label", true},
		"resource pod still running": {stuckShape{name: "r-running", pod: "running"}, "", "", "", false},
		"resource pod terminated just now": {stuckShape{name: "r-recent", pod: "terminated", terminatedAgo: 30 * time.Second},
			rules.Cause12985, repair.VerdictWait, "will repair after 1m", false},
		"wait-container pod terminated": {stuckShape{name: "w-old", wait: true, pod: "terminated", terminatedAgo: 3 * time.Minute},
			rules.CauseR5, repair.VerdictRepair, "repair --apply sets the label", true},
		"pod gone recently": {stuckShape{name: "gone-recent", nodeFinishedAt: time.Minute},
			rules.CauseR4, repair.VerdictWait, "will repair after ", false},
		"pod gone long ago": {stuckShape{name: "gone-old", nodeFinishedAt: 11 * time.Minute},
			rules.CauseR4, repair.VerdictRepair, "repair --apply sets the label", true},
		"label already true": {stuckShape{name: "done", pod: "terminated", terminatedAgo: time.Hour, label: "true"},
			rules.CauseR8, repair.VerdictManual, "upgrade to ≥3.7.2", false},
		"missing workflow label": {stuckShape{name: "orphan", pod: "terminated", terminatedAgo: time.Hour, noWorkflow: true},
			rules.Cause12985, repair.VerdictSkip, "check by hand", false},
	}
	nodes := map[string]node{}
	for name, s := range shapes {
		nodes[name] = s.shape.create(t, now)
	}

	// Report: nothing written, every stuck workflow listed with its cause, verdict and next step;
	// the one whose pod still runs is not stuck.
	var out, progress bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: repairNS, Now: func() time.Time { return now },
		Output: "json", Out: &out, Err: &progress})
	require.NoError(t, err)
	assert.Contains(t, progress.String(), "scanned 8 workflow(s) not completed in namespace "+repairNS+": 7 stuck")
	assert.Equal(t, 8, sum.Scanned)
	assert.Equal(t, 7, sum.Stuck)
	assert.Equal(t, repair.Counts{Rows: 7, Repair: 3, Wait: 2, Manual: 1, Skipped: 1}, sum.Counts)
	rows := rowsByWorkflow(t, out.Bytes())
	for name, s := range shapes {
		r, found := rows[nodes[name].workflow]
		if s.cause == "" {
			assert.False(t, found, "%s is not stuck: %+v", name, r)
			continue
		}
		assert.Equal(t, s.cause, r.Cause, "%s: %s", name, r.Reason)
		assert.Equal(t, s.verdict, r.Verdict, "%s: %s", name, r.Reason)
		assert.Contains(t, r.NextStep, s.next, name)
		v, _ := persistedLabel(t, repairNS, nodes[name])
		want := "false"
		if name == "label already true" {
			want = "true"
		}
		assert.Equal(t, want, v, "report mode writes nothing: %s", name)
	}
	assert.Contains(t, rows[nodes["missing workflow label"].workflow].Reason, "no workflows.argoproj.io/workflow label",
		"a result the controller cannot see is looked up by name, never created twice")

	// Apply: exactly the safe ones.
	sum, report, _, err := repairRun(t, true, func() time.Time { return now }, adminCfg)
	require.NoError(t, err)
	fmt.Printf("repair --apply report:\n%s", report)
	assert.Equal(t, repair.Counts{Rows: 7, Repaired: 3, Wait: 2, Manual: 1, Skipped: 1}, sum.Counts)
	for name, s := range shapes {
		v, _ := persistedLabel(t, repairNS, nodes[name])
		assert.Equal(t, s.repair || name == "label already true", v == "true", "%s: label %q", name, v)
	}

	// The grace periods follow the clock: 2 minutes later the recent resource pod is safe too.
	sum, _, _, err = repairRun(t, true, func() time.Time { return now.Add(2 * time.Minute) }, adminCfg)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Repaired)
	v, _ := persistedLabel(t, repairNS, nodes["resource pod terminated just now"])
	assert.Equal(t, "true", v)
	// And 10 minutes later the pod gone recently too.
	sum, _, _, err = repairRun(t, true, func() time.Time { return now.Add(10 * time.Minute) }, adminCfg)
	require.NoError(t, err)
	assert.Equal(t, 1, sum.Repaired, "gone-recent; the running pod and the orphan stay")
	v, _ = persistedLabel(t, repairNS, nodes["resource pod still running"])
	assert.Equal(t, "false", v, "never while an executor container could still write")
}

// A write by the executor between the repair's read and its patch is never overwritten: the
// patch carries the resourceVersion it decided on, conflicts, and the repair decides again.
func TestRepairNeverOverwritesAConcurrentWrite(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-race"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	n := newNode(t, "race", false)
	n = createWorkflow(t, ns, n, "Running", map[string]any{n.id: map[string]any{"id": n.id, "type": "Pod", "phase": "Running"}})
	pod := createPod(t, ns, n)
	now := time.Now()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "i", ImageID: "i",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-time.Hour))}}}}
	require.NoError(t, admin.Status().Update(ctx, pod))
	require.NoError(t, admin.Create(ctx, taskResult(ns, n, "false", map[string]any{"parameters": []any{map[string]any{"name": "a", "value": "1"}}})))

	var confirming atomic.Bool
	var once sync.Once
	clock := func() time.Time {
		// Called while the confirmation pass decides, after it re-read the task result and before
		// it patches: the executor writes new outputs right now.
		if confirming.Load() {
			once.Do(func() { mergePatch(t, admin, ns, n, `{"outputs":{"parameters":[{"name":"a","value":"2"}]}}`) })
		}
		return now
	}
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, Now: clock,
		ConfirmAfter: confirmAfter, AfterFirstPass: func() { confirming.Store(true) }, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, out.String())
	assert.Equal(t, 1, sum.Repaired)
	assert.Contains(t, out.String(), "re-decided after a concurrent write", "the stale patch was refused by its resourceVersion precondition")
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	require.NoError(t, admin.Get(ctx, clientKey(ns, n.id), u))
	params, _, _ := unstructured.NestedSlice(u.Object, "outputs", "parameters")
	assert.Equal(t, []any{map[string]any{"name": "a", "value": "2"}}, params, "the concurrent write survived")
	assert.Equal(t, "true", u.GetLabels()[rules.LabelReportOutputsCompleted])
}

// updateWorkflow reads Workflow ns/name, applies change and writes it back (the Workflow CRD
// has no status subresource: one update carries labels and status, as `argo retry` sends it).
func updateWorkflow(t *testing.T, ns, name string, change func(wf *unstructured.Unstructured)) {
	t.Helper()
	wf := &unstructured.Unstructured{}
	wf.SetGroupVersionKind(workflowGVK)
	require.NoError(t, admin.Get(context.Background(), clientKey(ns, name), wf))
	change(wf)
	require.NoError(t, admin.Update(context.Background(), wf))
}

// After `argo retry` the failed node's ID is reused, and a task result left "false" by the
// failed attempt is still there: flipping it before the new attempt's executor has finished
// would complete the new attempt without its outputs. The repair runs at each step between the
// retry and the new attempt's end, its clock a day ahead (past every grace, however the old
// result's and the old node's ages are counted), and flips nothing until the new attempt's own
// executors have terminated.
func TestRepairFlipsNothingBetweenARetryAndItsNewAttempt(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-retry"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	later := func() time.Time { return time.Now().Add(24 * time.Hour) }
	run := func(step string) (repair.Summary, string) {
		t.Helper()
		var out bytes.Buffer
		sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, Now: later, ConfirmAfter: confirmAfter, Out: &out, Err: &bytes.Buffer{}})
		require.NoError(t, err, "%s: %s", step, out.String())
		fmt.Printf("repair --apply %s:\n%s", step, out.String())
		return sum, out.String()
	}

	// Attempt 1: node X of a container template failed; its wait container died before
	// FinalizeOutput, so its task result stayed "false"; then its pod was deleted.
	n := newNode(t, "retry", true)
	failedAt := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	n = createWorkflow(t, ns, n, "Failed", map[string]any{
		n.id: map[string]any{"id": n.id, "type": "Pod", "phase": "Failed", "finishedAt": failedAt}})
	oldPod := createPod(t, ns, n)
	require.NoError(t, admin.Create(ctx, taskResult(ns, n, "false", resourceOutputs("attempt-1"))))
	require.NoError(t, admin.Delete(ctx, oldPod))
	require.True(t, apierrors.IsNotFound(admin.Get(ctx, clientKey(ns, oldPod.Name), &corev1.Pod{})), "the old pod is gone")

	// Control: as it stands (pod gone, node finished long ago) the result is one A3 repairs; only
	// the retry below holds it back.
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Now: later, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Repair, out.String())

	// `argo retry` (FormulateRetryWorkflow, workflow/util/util.go): one update that removes the
	// completed label, sets the phase label and status.phase Running, clears finishedAt and
	// deletes the failed Pod node from status.nodes (the controller re-creates it, same ID).
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		labels := wf.GetLabels()
		delete(labels, rules.LabelCompleted)
		labels[rules.LabelPhase] = "Running"
		wf.SetLabels(labels)
		require.NoError(t, unstructured.SetNestedField(wf.Object, "Running", "status", "phase"))
		unstructured.RemoveNestedField(wf.Object, "status", "finishedAt")
		unstructured.RemoveNestedField(wf.Object, "status", "nodes", n.id)
	})
	sum, _ = run("after the retry, node removed")
	assert.Equal(t, 0, sum.Stuck, "no Pod node: the retry's attempt is still to come")
	assert.Equal(t, 0, sum.Rows)
	label, _ := persistedLabel(t, ns, n)
	assert.Equal(t, "false", label, "no node: the retry's attempt is still to come")

	// The controller re-creates node X Pending for the new attempt.
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		require.NoError(t, unstructured.SetNestedMap(wf.Object, map[string]any{"id": n.id, "type": "Pod", "phase": "Pending"}, "status", "nodes", n.id))
	})
	sum, _ = run("node re-created Pending")
	assert.Equal(t, 0, sum.Stuck, "a Pending node without a pod waits for it")
	assert.Equal(t, 0, sum.Rows)
	label, _ = persistedLabel(t, ns, n)
	assert.Equal(t, "false", label)

	// The new attempt's pod runs (same name, same node ID), its executor containers running.
	newPod := createPod(t, ns, n)
	newPod.Status.Phase = corev1.PodRunning
	for _, c := range newPod.Spec.Containers {
		newPod.Status.ContainerStatuses = append(newPod.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}})
	}
	require.NoError(t, admin.Status().Update(ctx, newPod))
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		require.NoError(t, unstructured.SetNestedField(wf.Object, "Running", "status", "nodes", n.id, "phase"))
	})
	sum, _ = run("new attempt running")
	assert.Equal(t, 0, sum.Stuck, "a pod still running")
	assert.Equal(t, 0, sum.Rows)
	label, _ = persistedLabel(t, ns, n)
	assert.Equal(t, "false", label, "never while the new attempt's executor could still write")

	// The new attempt's executors terminate without finalizing: judged on its own containers,
	// the result is repaired once they have been terminated for the pod grace.
	terminatePod(t, newPod)
	sum, report := run("new attempt's executors terminated")
	assert.Equal(t, repair.Counts{Rows: 1, Repaired: 1}, sum.Counts)
	assert.Contains(t, report, "every executor container of pod "+n.pod+" terminated")
	label, _ = persistedLabel(t, ns, n)
	assert.Equal(t, "true", label)
}

// failedNode creates, in namespace ns, a container-template node that failed an hour ago in a
// Failed workflow left completed=false, its wait container having died before FinalizeOutput:
// its task result stayed "false". With pod, the node's pod is still there, every container
// terminated an hour ago; without, it is gone (as `argo retry` leaves it after its first step).
func failedNode(t *testing.T, ns, suffix string, pod bool) (node, *corev1.Pod) {
	t.Helper()
	n := newNode(t, suffix, true)
	started, finished := time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339), time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	n = createWorkflow(t, ns, n, "Failed", map[string]any{
		n.id: map[string]any{"id": n.id, "type": "Pod", "phase": "Failed", "startedAt": started, "finishedAt": finished}})
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		require.NoError(t, unstructured.SetNestedField(wf.Object, started, "status", "startedAt"))
		require.NoError(t, unstructured.SetNestedField(wf.Object, finished, "status", "finishedAt"))
	})
	var p *corev1.Pod
	if pod {
		p = createPod(t, ns, n)
		terminatePodAgo(t, p, time.Hour)
	}
	require.NoError(t, admin.Create(context.Background(), taskResult(ns, n, "false", resourceOutputs(suffix))))
	return n, p
}

// retryWorkflow sends the Workflow update of `argo retry` (v3.5.4's FormulateRetryWorkflow,
// workflow/util/util.go) for the failed node, then the controller's re-creation of that node,
// Pending, same ID; RetryWorkflow has deleted the node's pods before.
func retryWorkflow(t *testing.T, ns string, n node) {
	t.Helper()
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		labels := wf.GetLabels()
		delete(labels, rules.LabelCompleted)
		labels[rules.LabelPhase] = "Running"
		wf.SetLabels(labels)
		require.NoError(t, unstructured.SetNestedField(wf.Object, "Running", "status", "phase"))
		require.NoError(t, unstructured.SetNestedField(wf.Object, time.Now().UTC().Format(time.RFC3339), "status", "startedAt"))
		unstructured.RemoveNestedField(wf.Object, "status", "finishedAt")
		unstructured.RemoveNestedField(wf.Object, "status", "nodes", n.id)
	})
	updateWorkflow(t, ns, n.workflow, func(wf *unstructured.Unstructured) {
		require.NoError(t, unstructured.SetNestedMap(wf.Object, map[string]any{"id": n.id, "type": "Pod", "phase": "Pending",
			"startedAt": time.Now().UTC().Format(time.RFC3339)}, "status", "nodes", n.id))
	})
}

// `argo retry` (v3.5.4's RetryWorkflow, server/workflow/workflow_server.go) deletes the failed
// nodes' pods first and updates the Workflow afterwards. In between, a node's facts read "pod
// gone, node Failed, finished long ago", which A3 repairs; yet the retried node reuses the ID,
// and a "true" left on its task result would complete the new attempt before its outputs land.
// So `repair --apply` decides twice: after the confirmation delay it re-reads each task result
// found safe, its Workflow and its pods, and patches only what is still safe on facts unchanged
// since the first pass. The retry runs between the two passes, from the AfterFirstPass hook.
func TestRepairConfirmsOnFreshFactsAndFlipsNothingARetryChanged(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-confirm"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })

	// Nothing happens to this one: the confirmation repairs it.
	untouched, _ := failedNode(t, ns, "confirm-untouched", true)
	// Its pod is there at the first pass; a retry deletes it before the confirmation, which would
	// then repair it by branch (b), but the pods carrying the node ID changed.
	podsDeleted, podsDeletedPod := failedNode(t, ns, "confirm-pods-deleted", true)
	// A retry deleted its pod just before the first pass, which repairs it by branch (b); the
	// retry's Workflow update (and the controller's new attempt) land before the confirmation.
	midRetry, _ := failedNode(t, ns, "confirm-mid-retry", false)
	// Deleted before the confirmation (the workflow deleted, say): nothing left to repair.
	deleted, _ := failedNode(t, ns, "confirm-deleted", true)

	// Report only: the first pass alone finds all four safe, and nothing waits.
	var out, progress bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, ConfirmAfter: time.Hour, Out: &out, Err: &progress})
	require.NoError(t, err)
	require.Equal(t, repair.Counts{Rows: 4, Repair: 4}, sum.Counts, out.String())
	assert.NotContains(t, progress.String(), "waiting", "without --apply there is nothing to confirm")

	var between atomic.Int32
	out.Reset()
	progress.Reset()
	sum, err = repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, ConfirmAfter: confirmAfter,
		Output: "json", Out: &out, Err: &progress, AfterFirstPass: func() {
			between.Add(1)
			require.NoError(t, admin.Delete(ctx, podsDeletedPod))
			retryWorkflow(t, ns, midRetry)
			newPod := createPod(t, ns, midRetry)
			newPod.Status.Phase = corev1.PodPending
			require.NoError(t, admin.Status().Update(ctx, newPod))
			require.NoError(t, admin.Delete(ctx, taskResult(ns, deleted, "", nil)))
		}})
	require.NoError(t, err, "a task result deleted meanwhile is a skip, not an error: %s", out.String())
	assert.Equal(t, int32(1), between.Load(), "the hook runs once, between the passes")
	assert.Equal(t, repair.Counts{Rows: 4, Repaired: 1, Skipped: 3}, sum.Counts, out.String())
	assert.Contains(t, progress.String(), "4 node(s) to repair: waiting 10ms (--confirm-after)")
	assert.Contains(t, progress.String(), "confirmed 4 node(s): 1 repaired, 3 not")

	var report struct{ Rows []repair.Row }
	require.NoError(t, json.Unmarshal(out.Bytes(), &report))
	rows := map[string]repair.Row{}
	for _, r := range report.Rows {
		fmt.Printf("repair --apply, a retry between its passes: %-28s %-8s %s\n", r.Workflow, r.Verdict, r.Reason)
		rows[r.Node] = r
	}
	assert.Equal(t, repair.VerdictRepaired, rows[untouched.id].Verdict)
	assert.Equal(t, repair.VerdictSkip, rows[podsDeleted.id].Verdict)
	assert.True(t, strings.HasPrefix(rows[podsDeleted.id].Reason, "facts changed during the confirmation delay: pods carrying the node ID "+
		string(podsDeletedPod.UID)+" -> (none); now: "), rows[podsDeleted.id].Reason)
	assert.Contains(t, rows[podsDeleted.id].Reason, "pod gone; node finished ",
		"would be repaired by branch (b) now, but its pod went between the passes")
	assert.Equal(t, rules.CauseR4, rows[podsDeleted.id].Cause, "diagnosed afresh: the pod is gone")
	assert.Equal(t, repair.VerdictSkip, rows[midRetry.id].Verdict)
	assert.Contains(t, rows[midRetry.id].Reason, "facts changed during the confirmation delay: workflow phase Failed -> Running, workflow startedAt ")
	assert.Contains(t, rows[midRetry.id].Reason, "node phase Failed -> Pending")
	assert.Contains(t, rows[midRetry.id].Reason, "; now: nothing to repair on node "+midRetry.id+" (pod "+midRetry.pod+" of node "+midRetry.id+" is still running)")
	assert.Equal(t, repair.VerdictSkip, rows[deleted.id].Verdict)
	assert.Equal(t, "deleted meanwhile", rows[deleted.id].Reason)

	label, _ := persistedLabel(t, ns, untouched)
	assert.Equal(t, "true", label, "confirmed on unchanged facts: repaired")
	for _, n := range []node{podsDeleted, midRetry} {
		label, _ := persistedLabel(t, ns, n)
		assert.Equal(t, "false", label, "%s: the retry changed its facts between the passes", n.workflow)
	}

	// With nothing to repair there is no wait, however long the confirmation delay.
	progress.Reset()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	began := time.Now()
	sum, err = repair.Run(waitCtx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, ConfirmAfter: time.Hour,
		Workflow: midRetry.workflow, Out: &bytes.Buffer{}, Err: &progress,
		AfterFirstPass: func() { t.Error("AfterFirstPass called with nothing to repair") }})
	require.NoError(t, err)
	assert.Equal(t, repair.Counts{Rows: 1, Skipped: 1}, sum.Counts, "the new attempt's pod is Pending")
	assert.NotContains(t, progress.String(), "waiting")
	assert.Less(t, time.Since(began), 10*time.Second)
}

// A task result deleted after the confirmation pass re-read it and before its patch is a skip,
// not an error: the patch answers NotFound, and nothing is left to repair.
func TestRepairSkipsATaskResultDeletedBeforeItsPatch(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-deleted"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	n, _ := failedNode(t, ns, "deleted-before-patch", true)

	var confirming atomic.Bool
	var once sync.Once
	clock := func() time.Time {
		// Called while the confirmation pass decides, after it re-read the task result and before
		// it patches: the task result goes right now.
		if confirming.Load() {
			once.Do(func() { require.NoError(t, admin.Delete(ctx, taskResult(ns, n, "", nil))) })
		}
		return time.Now()
	}
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, Now: clock,
		ConfirmAfter: confirmAfter, AfterFirstPass: func() { confirming.Store(true) }, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, "deleted meanwhile is no failure: %s", out.String())
	assert.Equal(t, repair.Counts{Rows: 1, Skipped: 1}, sum.Counts, out.String())
	assert.Contains(t, out.String(), "deleted meanwhile")
}

// Executors v3.3.2–v3.5.1 made the task result owned by their Pod, not the Workflow (R1). Such a
// result is repaired when that very pod carries the node ID and is owned by the Workflow; one
// owned by another pod (another attempt's) is left alone, and so is one without any owner.
func TestRepairTiesAPodOwnedResultToItsPod(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-pod-owner"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	shape := func(suffix string, owners func(pod *corev1.Pod) []metav1.OwnerReference) node {
		n := newNode(t, suffix, false)
		n = createWorkflow(t, ns, n, "Running", map[string]any{n.id: map[string]any{"id": n.id, "type": "Pod", "phase": "Running"}})
		pod := createPod(t, ns, n)
		terminatePodAgo(t, pod, time.Hour)
		tr := taskResult(ns, n, "false", resourceOutputs(suffix))
		tr.SetOwnerReferences(owners(pod))
		require.NoError(t, admin.Create(ctx, tr))
		return n
	}
	byItsPod := shape("pod-owned", func(pod *corev1.Pod) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
	})
	byAnotherPod := shape("other-pod-owned", func(pod *corev1.Pod) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: "an-earlier-attempt"}}
	})
	unowned := shape("unowned", func(*corev1.Pod) []metav1.OwnerReference { return nil })

	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, ConfirmAfter: confirmAfter, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, out.String())
	fmt.Printf("repair --apply of pod-owned results:\n%s", out.String())
	assert.Equal(t, repair.Counts{Rows: 3, Repaired: 1, Skipped: 2}, sum.Counts, out.String())
	assert.Contains(t, out.String(), "owned by pod UID an-earlier-attempt, but the pod carrying node ID "+byAnotherPod.id)
	assert.Contains(t, out.String(), "no Workflow or Pod owner reference")
	for n, want := range map[node]string{byItsPod: "true", byAnotherPod: "false", unowned: "false"} {
		label, _ := persistedLabel(t, ns, n)
		assert.Equal(t, want, label, n.workflow)
	}
}

// --namespaces scans each listed namespace in turn, so it needs no cluster-wide permission: it
// runs as a user whose Roles are in those namespaces only, and leaves every other alone.
func TestRepairScansEachListedNamespace(t *testing.T) {
	ctx := context.Background()
	listed, other := []string{"repair-ns-a", "repair-ns-b"}, "repair-ns-c"
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	const user = "repair-namespaced"
	nodes := map[string]node{}
	for _, ns := range append([]string{other}, listed...) {
		require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		nodes[ns] = stuckShape{name: "safe-" + ns, pod: "terminated", terminatedAgo: 5 * time.Minute, namespace: ns}.create(t, time.Now())
	}
	for _, ns := range listed {
		require.NoError(t, admin.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflows"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"get", "list", "patch"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
			},
		}))
		require.NoError(t, admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}))
	}
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}

	// All namespaces at once is refused to this user: the scan must go namespace by namespace.
	_, err := repair.Run(ctx, repair.Options{RESTConfig: cfg, AllNamespaces: true, Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "forbidden")

	var out, progress bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: cfg, Namespaces: listed, Apply: true, ConfirmAfter: confirmAfter, Out: &out, Err: &progress})
	require.NoError(t, err, out.String())
	assert.Equal(t, repair.Counts{Rows: 2, Repaired: 2}, sum.Counts, out.String())
	assert.Contains(t, out.String(), "RBAC of default not checked: the repair may not create localsubjectaccessreviews",
		"without the grant the causes are named by shape alone, and the run goes on")
	for _, ns := range listed {
		assert.Contains(t, progress.String(), "scanned 1 workflow(s) not completed in namespace "+ns+": 1 stuck")
		label, _ := persistedLabel(t, ns, nodes[ns])
		assert.Equal(t, "true", label, ns)
	}
	label, _ := persistedLabel(t, other, nodes[other])
	assert.Equal(t, "false", label, "a namespace not listed is left alone")
}

func TestRepairFailsClearlyOnBadInput(t *testing.T) {
	unreachable := rest.CopyConfig(adminCfg)
	unreachable.Host = "https://127.0.0.1:1"
	_, _, _, err := repairRun(t, false, nil, unreachable)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot reach the API server")
	assert.NotContains(t, err.Error(), "\n", "one line")

	forbidden := rest.CopyConfig(adminCfg)
	forbidden.Impersonate = rest.ImpersonationConfig{UserName: "nobody"}
	_, _, _, err = repairRun(t, false, nil, forbidden)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "forbidden")

	_, err = repair.Run(context.Background(), repair.Options{RESTConfig: adminCfg, Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "--namespace"), err.Error())

	_, err = repair.Run(context.Background(), repair.Options{RESTConfig: adminCfg, Namespaces: []string{"a", "b"}, AllNamespaces: true, Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "give only one of --namespace, --namespaces and --all-namespaces")
}

// Against an API server without Argo's CRDs the repair stops with one line that says so.
func TestRepairFailsClearlyWithoutArgoCRDs(t *testing.T) {
	assets, err := controlplane.Assets()
	require.NoError(t, err)
	bare := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := bare.Start()
	require.NoError(t, err)
	defer func() { _ = bare.Stop() }()
	_, _, _, err = repairRun(t, false, nil, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is Argo Workflows installed?")
	assert.NotContains(t, err.Error(), "\n", "one line")
}
