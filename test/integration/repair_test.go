package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

const repairNS = "repair"

// stuckShape creates a workflow (with its node's finishedAt when given), optionally the node's
// pod with container states, and the task result as argoexec v3.5.4 left it (outputs, "false").
type stuckShape struct {
	name           string
	wait           bool
	pod            string // "" none, "running", "terminated"
	terminatedAgo  time.Duration
	nodeFinishedAt time.Duration // how long ago; 0 for none
	label          string        // task result label; "" for "false"
	noWorkflow     bool          // task result without the workflow label
}

func (s stuckShape) create(t *testing.T, now time.Time) node {
	t.Helper()
	ctx := context.Background()
	n := newNode(t, s.name, s.wait)
	nodeStatus := map[string]any{"id": n.id, "type": "Pod", "phase": "Succeeded"}
	if s.nodeFinishedAt > 0 {
		nodeStatus["finishedAt"] = now.Add(-s.nodeFinishedAt).UTC().Format(time.RFC3339)
	}
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": n.workflow, "namespace": repairNS,
			"labels": map[string]any{webhook.LabelCompleted: "false", webhook.LabelPhase: "Succeeded"}},
		"spec":   map[string]any{"entrypoint": "main"},
		"status": map[string]any{"phase": "Succeeded", "nodes": map[string]any{n.id: nodeStatus}},
	}}
	require.NoError(t, admin.Create(ctx, wf))
	if s.pod != "" {
		pod := createPod(t, repairNS, n)
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
	tr := taskResult(repairNS, n, label, resourceOutputs("x"))
	if s.noWorkflow {
		l := tr.GetLabels()
		delete(l, webhook.LabelWorkflow)
		tr.SetLabels(l)
	}
	// Created while no webhook is registered: stuck as it was before the webhook was installed.
	require.NoError(t, admin.Create(ctx, tr))
	return n
}

func repairRun(t *testing.T, apply bool, now func() time.Time, cfg *rest.Config) (repair.Summary, string, string, error) {
	t.Helper()
	var out, progress bytes.Buffer
	sum, err := repair.Run(context.Background(), repair.Options{
		RESTConfig: cfg, Namespace: repairNS, Apply: apply, Now: now, Out: &out, Err: &progress,
	})
	return sum, out.String(), progress.String(), err
}

func TestRepairPatchesExactlyTheSafeShapes(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: repairNS}}))
	// Stuck before the webhook existed: no configuration while the shapes are made.
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })

	now := time.Now()
	shapes := map[string]struct {
		shape  stuckShape
		repair bool
	}{
		"resource pod terminated long ago": {stuckShape{name: "r-old", pod: "terminated", terminatedAgo: 5 * time.Minute}, true},
		"resource pod still running":       {stuckShape{name: "r-running", pod: "running"}, false},
		"resource pod terminated just now": {stuckShape{name: "r-recent", pod: "terminated", terminatedAgo: 30 * time.Second}, false},
		"wait-container pod terminated":    {stuckShape{name: "w-old", wait: true, pod: "terminated", terminatedAgo: 3 * time.Minute}, true},
		"pod gone recently":                {stuckShape{name: "gone-recent", nodeFinishedAt: time.Minute}, false},
		"pod gone long ago":                {stuckShape{name: "gone-old", nodeFinishedAt: 11 * time.Minute}, true},
		"label already true":               {stuckShape{name: "done", pod: "terminated", terminatedAgo: time.Hour, label: "true"}, false},
		"missing workflow label":           {stuckShape{name: "orphan", pod: "terminated", terminatedAgo: time.Hour, noWorkflow: true}, false},
	}
	nodes := map[string]node{}
	for name, s := range shapes {
		nodes[name] = s.shape.create(t, now)
	}

	// Report: nothing patched, every not-complete result listed with its verdict.
	sum, report, progress, err := repairRun(t, false, func() time.Time { return now }, adminCfg)
	require.NoError(t, err)
	assert.Contains(t, progress, "scanned 7 task result(s) not complete")
	assert.Equal(t, repair.Summary{Scanned: 7, Repair: 3, Skipped: 4}, sum, report)
	for name := range shapes {
		v, _ := persistedLabel(t, repairNS, nodes[name])
		want := "false"
		if name == "label already true" {
			want = "true"
		}
		assert.Equal(t, want, v, "report mode patches nothing: %s", name)
	}

	// Apply: exactly the safe ones.
	sum, report, _, err = repairRun(t, true, func() time.Time { return now }, adminCfg)
	require.NoError(t, err)
	fmt.Printf("repair --apply report:\n%s", report)
	assert.Equal(t, repair.Summary{Scanned: 7, Repaired: 3, Skipped: 4}, sum)
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

	// -o json for machines.
	var out bytes.Buffer
	_, err = repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: repairNS, Output: "json", Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err)
	var doc struct {
		Rows    []repair.Row   `json:"rows"`
		Summary repair.Summary `json:"summary"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	assert.Equal(t, 2, doc.Summary.Scanned, "the running pod's result and the orphan remain")
}

// A write by the executor between the repair's read and its patch is never overwritten: the
// patch carries the resourceVersion it decided on, conflicts, and the repair decides again.
func TestRepairNeverOverwritesAConcurrentWrite(t *testing.T) {
	ctx := context.Background()
	const ns = "repair-race"
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, unregister(ctx))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	n := newNode(t, "race", false)
	pod := createPod(t, ns, n)
	now := time.Now()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "i", ImageID: "i",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-time.Hour))}}}}
	require.NoError(t, admin.Status().Update(ctx, pod))
	require.NoError(t, admin.Create(ctx, taskResult(ns, n, "false", map[string]any{"parameters": []any{map[string]any{"name": "a", "value": "1"}}})))

	var once sync.Once
	clock := func() time.Time {
		// Called while deciding, after the list: the executor writes new outputs right now.
		once.Do(func() { mergePatch(t, admin, ns, n, `{"outputs":{"parameters":[{"name":"a","value":"2"}]}}`) })
		return now
	}
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, Now: clock, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, out.String())
	assert.Equal(t, 1, sum.Repaired)
	assert.Contains(t, out.String(), "re-decided after a concurrent write", "the stale patch was refused by its resourceVersion precondition")
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	require.NoError(t, admin.Get(ctx, clientKey(ns, n.id), u))
	params, _, _ := unstructured.NestedSlice(u.Object, "outputs", "parameters")
	assert.Equal(t, []any{map[string]any{"name": "a", "value": "2"}}, params, "the concurrent write survived")
	assert.Equal(t, "true", u.GetLabels()[webhook.LabelReportOutputsCompleted])
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
