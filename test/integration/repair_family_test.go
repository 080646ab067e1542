package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// famPod is the pod of a node as the kubelet left it: its phase, its main and (for container
// templates) wait containers' states, its service account and annotations.
type famPod struct {
	phase       corev1.PodPhase
	wait        *corev1.ContainerState // nil: a resource or data pod, main only
	main        corev1.ContainerState
	sa          string
	annotations map[string]string
}

// famResult is a node's task result as the executor left it.
type famResult struct {
	label    string // "" for no report-outputs-completed label (executors ≤ v3.5.1)
	outputs  bool
	podOwned bool // owned by its Pod (executors v3.3.2–v3.5.1) rather than the Workflow
}

// famCase is one workflow of the mixed cluster, hand-made in one controller version's shape: a
// Pod node (plus, for R11, its Steps parents), its pod, its task result, and the verdicts.
type famCase struct {
	shape      string // the Argo versions whose shape this is, for the reader
	phase      string // status.phase and the phase label
	node       map[string]any
	completion bool // status.taskResultsCompletionStatus = {<node>: false}
	parents    bool // Steps and StepGroup nodes above the Pod node, Running
	labels     map[string]string
	pod        *famPod
	podDeleted bool // the pod is deleted after the task result is made
	result     *famResult
	// cause, verdict and next (a fragment of the next step) in the report; repaired: written
	// by --apply; none of them for a workflow that is not stuck.
	cause, verdict, next string
	repaired             bool
}

func exited(code int32, reason string, ago time.Duration) corev1.ContainerState {
	at := metav1.NewTime(time.Now().Add(-ago).Truncate(time.Second))
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: at, FinishedAt: at}}
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Now().Add(-time.Hour))}}
}

func ago(d time.Duration) string { return time.Now().Add(-d).UTC().Format(time.RFC3339) }

// create makes the case's objects in namespace ns for workflow wf-<name> and returns its node.
func (c famCase) create(t *testing.T, ns, name string) node {
	t.Helper()
	ctx := context.Background()
	n := newNode(t, name, c.pod != nil && c.pod.wait != nil)
	nodeStatus := map[string]any{"id": n.id, "name": n.workflow + "[0].main", "type": "Pod", "startedAt": ago(time.Hour)}
	for k, v := range c.node {
		nodeStatus[k] = v
	}
	nodes := map[string]any{n.id: nodeStatus}
	if c.parents {
		group := n.workflow + "-1094637227"
		nodes[n.workflow] = map[string]any{"id": n.workflow, "type": "Steps", "phase": "Running", "children": []any{group}}
		nodes[group] = map[string]any{"id": group, "type": "StepGroup", "phase": "Running", "children": []any{n.id}}
	}
	status := map[string]any{"phase": c.phase, "startedAt": ago(time.Hour), "nodes": nodes}
	if c.completion {
		status["taskResultsCompletionStatus"] = map[string]any{n.id: false}
	}
	labels := map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: c.phase}
	for k, v := range c.labels {
		labels[k] = v
	}
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": n.workflow, "namespace": ns, "labels": labels},
		"spec":     map[string]any{"entrypoint": "main"},
		"status":   status,
	}}
	require.NoError(t, admin.Create(ctx, wf))
	n.wfUID = wf.GetUID()

	var pod *corev1.Pod
	if p := c.pod; p != nil {
		pod = &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: n.pod, Namespace: ns,
				Labels:          map[string]string{rules.LabelWorkflow: n.workflow, rules.LabelCompleted: "false"},
				Annotations:     map[string]string{rules.AnnotationNodeID: n.id},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: n.workflow, UID: n.wfUID}}},
			Spec: corev1.PodSpec{ServiceAccountName: p.sa,
				Containers: []corev1.Container{{Name: "main", Image: "quay.io/argoproj/argoexec:v3.5.4", Command: []string{"argoexec", "resource", "get"}}}},
		}
		for k, v := range p.annotations {
			pod.Annotations[k] = v
		}
		states := map[string]corev1.ContainerState{"main": p.main}
		if p.wait != nil {
			pod.Spec.Containers = []corev1.Container{
				{Name: "wait", Image: "quay.io/argoproj/argoexec:v3.5.4", Command: []string{"argoexec", "wait"}},
				{Name: "main", Image: "alpine:3", Command: []string{"/var/run/argo/argoexec", "emissary", "--", "sh", "-c", "echo hi"}},
			}
			states["wait"] = *p.wait
		}
		require.NoError(t, admin.Create(ctx, pod))
		pod.Status.Phase = p.phase
		for _, ct := range pod.Spec.Containers {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: ct.Name, Image: ct.Image, ImageID: ct.Image, State: states[ct.Name]})
		}
		require.NoError(t, admin.Status().Update(ctx, pod))
	}

	if r := c.result; r != nil {
		var outputs map[string]any
		if r.outputs {
			outputs = resourceOutputs(name)
		}
		tr := taskResult(ns, n, r.label, outputs)
		if r.podOwned {
			require.NotNil(t, pod, "a Pod-owned result needs its pod")
			tr.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}})
		}
		require.NoError(t, admin.Create(ctx, tr))
	}
	if c.podDeleted {
		require.NoError(t, admin.Delete(ctx, pod))
	}
	return n
}

// The shapes below are each controller version's, as argo-stuck-family.md §1 describes them.
var (
	resourcePod = func(phase corev1.PodPhase, main corev1.ContainerState) *famPod {
		return &famPod{phase: phase, main: main}
	}
	waitPod = func(phase corev1.PodPhase, wait, main corev1.ContainerState) *famPod {
		return &famPod{phase: phase, wait: &wait, main: main}
	}
	succeededWaitPod = func() *famPod {
		return waitPod(corev1.PodSucceeded, exited(0, "Completed", 5*time.Minute), exited(0, "Completed", 5*time.Minute))
	}
	falseWithOutputs = &famResult{label: "false", outputs: true}
	placeholder      = &famResult{label: "false"}
)

// familyNoRBAC is the executor service account of the R2 workflow: no role grants it anything
// on task results until the test binds one.
const familyNoRBAC = "no-rbac"

func familyCases() map[string]famCase {
	return map[string]famCase{
		"12985": {shape: "controller v3.5.4, argoexec v3.5.4 resource template with outputs: Succeeded, completed=false",
			phase: "Succeeded", node: map[string]any{"phase": "Succeeded", "finishedAt": ago(5 * time.Minute)}, completion: true,
			pod: resourcePod(corev1.PodSucceeded, exited(0, "Completed", 5*time.Minute)), result: falseWithOutputs,
			cause: rules.Cause12985, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r1": {shape: "controller v3.5.8, argoexec v3.4.9 mid-upgrade: the result has no label and is owned by its Pod",
			phase: "Running", node: map[string]any{"phase": "Running"}, completion: true,
			pod: succeededWaitPod(), result: &famResult{outputs: true, podOwned: true},
			cause: rules.CauseR1, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r2": {shape: "controller v3.5.10, the executor's account may not write task results: argoexec fell back to pod annotations",
			phase: "Running", node: map[string]any{"phase": "Running"}, completion: true,
			pod: &famPod{phase: corev1.PodSucceeded, wait: ptr(exited(0, "Completed", 5*time.Minute)), main: exited(0, "Completed", 5*time.Minute),
				sa: familyNoRBAC, annotations: map[string]string{rules.AnnotationOutputs: `{"parameters":[{"name":"p","value":"v"}]}`}},
			cause: rules.CauseR2, verdict: repair.VerdictManual, next: "fix RBAC for " + familyNS + "/" + familyNoRBAC + ", then run repair"},
		"r3": {shape: "controller v3.5.10: the wait container was OOMKilled before FinalizeOutput",
			phase: "Running", node: map[string]any{"phase": "Failed", "finishedAt": ago(5 * time.Minute)}, completion: true,
			pod: waitPod(corev1.PodFailed, exited(137, "OOMKilled", 5*time.Minute), exited(0, "Completed", 6*time.Minute)), result: placeholder,
			cause: rules.CauseR3, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r4": {shape: "controller v3.5.10: the pod was evicted and deleted with the result \"false\"",
			phase: "Running", node: map[string]any{"phase": "Error", "message": "pod deleted", "finishedAt": ago(15 * time.Minute)}, completion: true,
			result: placeholder,
			cause:  rules.CauseR4, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r4-recent": {shape: "controller v3.5.10: the pod was preempted 3 minutes ago, under the 10m orphan grace",
			phase: "Running", node: map[string]any{"phase": "Error", "message": "pod deleted", "finishedAt": ago(3 * time.Minute)}, completion: true,
			result: placeholder,
			cause:  rules.CauseR4, verdict: repair.VerdictWait, next: "will repair after "},
		"r1-gone": {shape: "controller v3.5.8, argoexec v3.4.9: the Pod-owned result outlived its deleted pod",
			phase: "Running", node: map[string]any{"phase": "Error", "message": "pod deleted", "finishedAt": ago(15 * time.Minute)}, completion: true,
			pod: succeededWaitPod(), podDeleted: true, result: &famResult{outputs: true, podOwned: true},
			cause: rules.CauseR1, verdict: repair.VerdictSkip, next: "the garbage collector deletes it with its pod, then repair creates it"},
		"r5": {shape: "controller v3.6.x: the wait exited 0 but FinalizeOutput gave up",
			phase: "Running", node: map[string]any{"phase": "Running"}, completion: true,
			pod: succeededWaitPod(), result: falseWithOutputs,
			cause: rules.CauseR5, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r6": {shape: "controller v4.x: a resource template's main failed before its deferred FinalizeOutput (taskResultSynced false)",
			phase: "Running", node: map[string]any{"phase": "Failed", "taskResultSynced": false},
			pod: resourcePod(corev1.PodFailed, exited(1, "Error", 5*time.Minute)), result: placeholder,
			cause: rules.CauseR6, verdict: repair.VerdictRepair, next: "repair --apply sets the label", repaired: true},
		"r7": {shape: "controller v3.7.6: the pod Failed (node lost) while its wait container never terminated",
			phase: "Running", node: map[string]any{"phase": "Running", "taskResultSynced": false},
			pod: waitPod(corev1.PodFailed, running(), exited(0, "Completed", 5*time.Minute)), result: placeholder,
			cause: rules.CauseR7, verdict: repair.VerdictManual, next: "or upgrade to ≥3.6.16/3.7.7"},
		"r8": {shape: "controller v3.7.1: the result is \"true\" but the outputs-not-yet-set hold keeps the node Running",
			phase: "Running", node: map[string]any{"phase": "Running", "taskResultSynced": true},
			pod: succeededWaitPod(), result: &famResult{label: "true", outputs: true},
			cause: rules.CauseR8, verdict: repair.VerdictManual, next: "upgrade to ≥3.7.2"},
		"r9": {shape: "controller v3.7.x with an instanceID: the result was deleted, taskResultSynced stays false",
			phase: "Running", node: map[string]any{"phase": "Running", "taskResultSynced": false},
			labels: map[string]string{rules.LabelControllerInstanceID: "team-a"}, pod: succeededWaitPod(),
			cause: rules.CauseR9, verdict: repair.VerdictRepair, next: "repair --apply creates the task result", repaired: true},
		"r10": {shape: "controller v3.5.6, workflow started before v3.5.3: no result and no completion entry",
			phase: "Running", node: map[string]any{"phase": "Running"}, pod: succeededWaitPod(),
			cause: rules.CauseR10, verdict: repair.VerdictRepair, next: "repair --apply creates the task result", repaired: true},
		"r11": {shape: "controller v4.0.6 (argo-workflows#15034): the StepGroup stays Running after its child Succeeded",
			phase: "Running", node: map[string]any{"phase": "Succeeded", "taskResultSynced": true, "finishedAt": ago(5 * time.Minute)}, parents: true,
			pod: succeededWaitPod(), result: &famResult{label: "true", outputs: true},
			cause: rules.CauseR11, verdict: repair.VerdictManual, next: "not a task-result problem: see argo-workflows#15034"},
		"busy": {shape: "any version: a resource pod still running, its placeholder result \"false\": not stuck",
			phase: "Running", node: map[string]any{"phase": "Running"}, pod: resourcePod(corev1.PodRunning, running()), result: placeholder},
	}
}

func ptr[T any](v T) *T { return &v }

const familyNS = "repair-family"

// One workflow per cause of the family, each in its version's shape, in one namespace: the
// repair names every cause, its verdict and next step, repairs exactly the safe ones through
// the confirmation pass (flipping #12985, R1, R3, R4, R5, R6; creating R9, R10), writes no
// Workflow, asks the operator for R2 (RBAC), R7, R8 and R11, and creates R2's result once its
// executor's account may write task results.
func TestRepairDiagnosesEveryCauseOfTheFamily(t *testing.T) {
	ctx := context.Background()
	repairNamespace(t, familyNS)
	require.NoError(t, admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: familyNoRBAC, Namespace: familyNS}}))
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })

	cases := familyCases()
	nodes := map[string]node{}
	workflowVersions := map[string]string{}
	for name, c := range cases {
		nodes[name] = c.create(t, familyNS, "fam-"+name)
		workflowVersions[nodes[name].workflow] = resourceVersionOf(t, familyNS, nodes[name].workflow)
	}
	byWorkflow := func(rows []repair.Row) map[string]repair.Row {
		out := map[string]repair.Row{}
		for _, r := range rows {
			out[r.Workflow] = r
		}
		return out
	}
	runFamily := func(apply bool, output string) (repair.Summary, string, string) {
		t.Helper()
		var out, progress bytes.Buffer
		sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, Apply: apply,
			ConfirmAfter: confirmAfter, Output: output, Out: &out, Err: &progress})
		require.NoError(t, err, out.String())
		return sum, out.String(), progress.String()
	}

	// Report only: every cause named, nothing written.
	sum, out, _ := runFamily(false, "json")
	rows := byWorkflow(rowsOf(t, out))
	assert.Equal(t, 15, sum.Scanned)
	assert.Equal(t, 14, sum.Stuck, "all but the busy one")
	assert.Equal(t, repair.Counts{Rows: 14, Repair: 8, Wait: 1, Manual: 4, Skipped: 1}, sum.Counts)
	for name, c := range cases {
		r, found := rows[nodes[name].workflow]
		if c.cause == "" {
			assert.False(t, found, "%s is not stuck", name)
			continue
		}
		require.True(t, found, "%s (%s) is reported", name, c.shape)
		assert.Equal(t, c.cause, r.Cause, "%s: %s", name, r.Reason)
		assert.Equal(t, c.verdict, r.Verdict, "%s: %s", name, r.Reason)
		assert.Contains(t, r.NextStep, c.next, name)
	}
	assert.Contains(t, rows[nodes["r7"].workflow].NextStep, "delete pod "+nodes["r7"].pod)
	assert.Empty(t, rows[nodes["r11"].workflow].Node, "R11 is about the workflow, not a node")
	for _, cause := range []string{rules.Cause12985, rules.CauseR1, rules.CauseR2, rules.CauseR3, rules.CauseR4, rules.CauseR5,
		rules.CauseR6, rules.CauseR7, rules.CauseR8, rules.CauseR9, rules.CauseR10, rules.CauseR11} {
		assert.NotZero(t, sum.Causes[cause].Rows, "a workflow of cause %s", cause)
	}
	assertFamilyUntouched(t, cases, nodes, func(string) bool { return false })

	assert.Contains(t, rows[nodes["r1-gone"].workflow].Reason, "the garbage collector deletes the result with its pod")
	_, table, _ := runFamily(false, "table")
	fmt.Printf("repair on a mixed cluster (report only):\n%s", table)

	// --fail-on-manual (the CronJob's): the same report, then an error naming the nodes that need
	// the operator, so the run fails and alerts.
	var failOut bytes.Buffer
	failSum, failErr := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, FailOnManual: true, Output: "json", Out: &failOut, Err: &bytes.Buffer{}})
	require.Error(t, failErr, "manual verdicts fail the run")
	assert.Contains(t, failErr.Error(), "4 stuck node(s) need the operator")
	assert.Equal(t, sum.Counts, failSum.Counts, "the report is written first, unchanged")
	assert.NotEmpty(t, failOut.String())

	// Apply: exactly the safe ones, through the confirmation pass.
	sum, out, progress := runFamily(true, "table")
	fmt.Printf("repair --apply on a mixed cluster:\n%s", out)
	assert.Contains(t, progress, "8 node(s) to repair: waiting 10ms (--confirm-after)")
	assert.Contains(t, progress, "confirmed 8 node(s): 8 repaired, 0 not")
	assert.Equal(t, repair.Counts{Rows: 14, Repaired: 8, Wait: 1, Manual: 4, Skipped: 1}, sum.Counts)
	assertFamilyUntouched(t, cases, nodes, func(name string) bool { return cases[name].repaired })
	for name, c := range cases {
		if !c.repaired {
			continue
		}
		// The Workflow tells why: an Event naming the repair, the cause and the node.
		var events corev1.EventList
		require.NoError(t, admin.List(ctx, &events, client.InNamespace(familyNS), client.MatchingFields{"involvedObject.name": nodes[name].workflow}))
		var reasons []string
		for _, e := range events.Items {
			if e.Source.Component == "argo-completion-repair" && strings.Contains(e.Message, nodes[name].id) {
				reasons = append(reasons, e.Reason)
			}
		}
		wantReason := rules.ReasonTaskResultRepaired
		if c.result == nil {
			wantReason = rules.ReasonTaskResultCreated
		}
		assert.Equal(t, []string{wantReason}, reasons, "%s: one Event on its Workflow", name)
		tr := getTaskResult(t, familyNS, nodes[name].id)
		require.NotNil(t, tr, "%s: its task result exists", name)
		assert.Equal(t, "true", tr.GetLabels()[rules.LabelReportOutputsCompleted], name)
		if c.result == nil {
			// Created as Argo's executor creates it: named after the node, labelled with the
			// workflow (and its controller instance), owned by the Workflow, complete.
			want := map[string]string{rules.LabelWorkflow: nodes[name].workflow, rules.LabelReportOutputsCompleted: "true"}
			if id := c.labels[rules.LabelControllerInstanceID]; id != "" {
				want[rules.LabelControllerInstanceID] = id
			}
			assert.Equal(t, want, tr.GetLabels(), name)
			assert.Equal(t, []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: nodes[name].workflow, UID: nodes[name].wfUID}},
				tr.GetOwnerReferences(), name)
		}
	}
	for name, n := range nodes {
		assert.Equal(t, workflowVersions[n.workflow], resourceVersionOf(t, familyNS, n.workflow), "%s: the repair never writes a Workflow", name)
	}

	// One workflow explained in full: every Pod node, its pod, its task result, the cause and
	// the next step.
	var explained bytes.Buffer
	_, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, Workflow: nodes["r7"].workflow, Out: &explained, Err: &bytes.Buffer{}})
	require.NoError(t, err)
	fmt.Printf("repair -n %s --workflow %s:\n%s", familyNS, nodes["r7"].workflow, explained.String())
	assert.Contains(t, explained.String(), "workflow "+familyNS+"/"+nodes["r7"].workflow+" (phase Running) stuck: Running while every pod has finished")
	assert.Contains(t, explained.String(), nodes["r7"].pod)
	assert.Contains(t, explained.String(), "delete pod "+nodes["r7"].pod+" or upgrade to ≥3.6.16/3.7.7")
	explained.Reset()
	_, err = repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, Workflow: nodes["r11"].workflow, Out: &explained, Err: &bytes.Buffer{}})
	require.NoError(t, err)
	fmt.Printf("repair -n %s --workflow %s:\n%s", familyNS, nodes["r11"].workflow, explained.String())
	assert.Contains(t, explained.String(), "task result complete", "its Pod node, with nothing to do")
	assert.Contains(t, explained.String(), "not a task-result problem: see argo-workflows#15034")
	explained.Reset()
	_, err = repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, Workflow: nodes["busy"].workflow, Out: &explained, Err: &bytes.Buffer{}})
	require.NoError(t, err)
	assert.Contains(t, explained.String(), "not stuck: pod "+nodes["busy"].pod+" of node "+nodes["busy"].id+" is still running")

	// R2: once the executor's account may create and patch task results, the repair creates the
	// result its executor could not. The authorizer follows the new binding a moment late.
	require.NoError(t, admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "executor-" + familyNoRBAC, Namespace: familyNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "executor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: familyNoRBAC, Namespace: familyNS}},
	}))
	r2 := nodes["r2"]
	require.Eventually(t, func() bool {
		var out bytes.Buffer
		_, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: familyNS, Workflow: r2.workflow, Output: "json", Out: &out, Err: &bytes.Buffer{}})
		require.NoError(t, err)
		return byWorkflow(rowsOf(t, out.String()))[r2.workflow].Verdict == repair.VerdictRepair
	}, 15*time.Second, 100*time.Millisecond, "the RBAC fix reaches the authorizer")
	sum, out, _ = runFamily(true, "json")
	got := byWorkflow(rowsOf(t, out))[r2.workflow]
	assert.Equal(t, rules.CauseR2, got.Cause, got.Reason)
	assert.Equal(t, repair.VerdictRepaired, got.Verdict, got.Reason)
	assert.Contains(t, got.Reason, "may write task results now")
	assert.Equal(t, 1, sum.Repaired, "R2's result, and nothing else: the rest was repaired before")
	assert.Zero(t, sum.Repair)
	tr := getTaskResult(t, familyNS, r2.id)
	require.NotNil(t, tr, "R2's task result was created")
	assert.Equal(t, "true", tr.GetLabels()[rules.LabelReportOutputsCompleted])
}

// assertFamilyUntouched checks each case's task result is as created unless written(name):
// labels unchanged, no result created where there was none.
func assertFamilyUntouched(t *testing.T, cases map[string]famCase, nodes map[string]node, written func(string) bool) {
	t.Helper()
	for name, c := range cases {
		if written(name) {
			continue
		}
		tr := getTaskResult(t, familyNS, nodes[name].id)
		if c.result == nil {
			assert.Nil(t, tr, "%s: no task result created", name)
			continue
		}
		require.NotNil(t, tr, name)
		v, labelled := tr.GetLabels()[rules.LabelReportOutputsCompleted]
		assert.Equal(t, c.result.label != "", labelled, name)
		assert.Equal(t, c.result.label, v, "%s: label unchanged", name)
	}
}

// getTaskResult reads task result ns/name; nil when it does not exist.
func getTaskResult(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	err := admin.Get(context.Background(), clientKey(ns, name), u)
	if apierrors.IsNotFound(err) {
		return nil
	}
	require.NoError(t, err)
	return u
}

func resourceVersionOf(t *testing.T, ns, workflow string) string {
	t.Helper()
	wf := &unstructured.Unstructured{}
	wf.SetGroupVersionKind(workflowGVK)
	require.NoError(t, admin.Get(context.Background(), clientKey(ns, workflow), wf))
	return wf.GetResourceVersion()
}

func rowsOf(t *testing.T, out string) []repair.Row {
	t.Helper()
	var doc struct{ Rows []repair.Row }
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	return doc.Rows
}

// A missing task result written by its executor after all, between the two passes or while
// the confirmation pass decides (after it listed the workflow's task results, caught by its
// lookup by name before the Create), is never overwritten: the repair creates, never updates,
// and reports "created meanwhile".
func TestRepairCreatesOnlyWhatIsStillMissing(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-create"
	repairNamespace(t, ns)
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	r9 := familyCases()["r9"]
	between, during := r9.create(t, ns, "create-between"), r9.create(t, ns, "create-during")
	// The executor's own late write: outputs and "false", as ReportOutputs creates it.
	executorWrites := func(n node) {
		require.NoError(t, admin.Create(ctx, taskResult(ns, n, "false", resourceOutputs("late"))))
	}

	var confirming atomic.Bool
	var calls atomic.Int32
	clock := func() time.Time {
		// The confirmation pass reads the clock once per workflow, after listing its task results
		// and pods; the workflows come in name order, so the second call is wf-create-during's.
		if confirming.Load() && calls.Add(1) == 2 {
			executorWrites(during)
		}
		return time.Now()
	}
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, ConfirmAfter: confirmAfter, Now: clock,
		Output: "json", Out: &out, Err: &bytes.Buffer{}, AfterFirstPass: func() {
			executorWrites(between)
			confirming.Store(true)
		}})
	require.NoError(t, err, "created meanwhile is no failure: %s", out.String())
	assert.Equal(t, int32(2), calls.Load(), "one confirmation per workflow")
	assert.Equal(t, repair.Counts{Rows: 2, Skipped: 2}, sum.Counts, out.String())
	for _, r := range rowsOf(t, out.String()) {
		assert.Equal(t, "created meanwhile", r.Reason, r.Workflow)
	}
	for _, n := range []node{between, during} {
		tr := getTaskResult(t, ns, n.id)
		require.NotNil(t, tr)
		assert.Equal(t, "false", tr.GetLabels()[rules.LabelReportOutputsCompleted], "%s: the executor's result is left as it wrote it", n.workflow)
		params, _, _ := unstructured.NestedSlice(tr.Object, "outputs", "parameters")
		assert.Len(t, params, 1, "%s: its outputs kept", n.workflow)
	}
}
