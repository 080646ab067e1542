package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// setupNamespace creates a namespace whose default service account may act as Argo's executor.
func setupNamespace(t *testing.T, ns string) {
	t.Helper()
	require.NoError(t, cluster.SetupNamespace(context.Background(), ns))
}

// startArgo sets up namespace ns and starts Argo's controller of version for it, with a
// simulated node acting as argoexec v3.5.4. stop ends both and checks that every simulated write
// succeeded and that the controller ran throughout.
func startArgo(t *testing.T, ctx context.Context, version, ns string) (node *harness.Node, ctrl *harness.Controller, stop func()) {
	t.Helper()
	setupNamespace(t, ns)
	ctrl, err := harness.StartController(ctx, admin, version, cluster.ControllerKubeconfig, ns, logDir)
	require.NoError(t, err)
	nodeCtx, cancel := context.WithCancel(ctx)
	node = &harness.Node{Admin: admin, Config: adminCfg, Namespace: ns, Executor: harness.ExecutorV354}
	nodeDone := make(chan struct{})
	go func() { node.Run(nodeCtx); close(nodeDone) }()
	return node, ctrl, func() {
		cancel()
		<-nodeDone
		assert.Empty(t, node.Errors(), "every simulated executor write and kubelet update succeeded")
		assert.False(t, ctrl.Exited(), "the controller ran throughout (log: %s)", ctrl.LogPath)
		ctrl.Stop()
	}
}

// submit creates the workflow in testdata/file (generateName) and returns its name.
func submit(t *testing.T, ns, file string, mods ...func(*unstructured.Unstructured)) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	require.NoError(t, err)
	defer f.Close()
	wf := &unstructured.Unstructured{}
	require.NoError(t, yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&wf.Object))
	wf.SetNamespace(ns)
	for _, m := range mods {
		m(wf)
	}
	require.NoError(t, admin.Create(context.Background(), wf))
	return wf.GetName()
}

// withFixedExecutor makes the simulated node act as argoexec v3.5.5+ for the workflow's pods.
func withFixedExecutor(wf *unstructuredWF) {
	require := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	require(unstructured.SetNestedStringMap(wf.Object, map[string]string{harness.ExecutorAnnotation: string(harness.ExecutorV355)}, "spec", "podMetadata", "annotations"))
}

// state is what a scenario observes of a workflow.
type state struct {
	Gone       bool
	Phase      string
	Completed  string
	FinishedAt string
	// Seen records the terminal facts observed before deletion.
	SeenCompleted  bool
	SeenPhase      string
	SeenFinishedAt string
	// SeenCompletedOutputs are the output parameters ("name=value") of the workflow's Pod nodes
	// in the last poll that saw it completed: what its nodes carried when the controller
	// deleted its task results.
	SeenCompletedOutputs []string
}

func (s state) String() string {
	if s.Gone {
		return fmt.Sprintf("deleted (last seen phase=%s completed=%v finishedAt=%q)", s.SeenPhase, s.SeenCompleted, s.SeenFinishedAt)
	}
	return fmt.Sprintf("phase=%s completed=%q finishedAt=%q", s.Phase, s.Completed, s.FinishedAt)
}

// tracker polls one workflow every 200 ms from its submission until it is deleted, keeping the
// terminal facts it saw, so a state that lasts only until the TTL deletes the workflow is not
// missed whatever the test is doing meanwhile.
type tracker struct {
	mu sync.Mutex
	s  state
}

// track starts polling ns/name until it is gone or ctx ends.
func track(ctx context.Context, ns, name string) *tracker {
	tr := &tracker{}
	go func() {
		for ctx.Err() == nil {
			tr.poll(ctx, ns, name)
			if tr.get().Gone {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return tr
}

func (tr *tracker) poll(ctx context.Context, ns, name string) {
	wf := &unstructured.Unstructured{}
	wf.SetAPIVersion("argoproj.io/v1alpha1")
	wf.SetKind("Workflow")
	err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, wf)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch {
	case apierrors.IsNotFound(err):
		tr.s.Gone = true
	case err == nil:
		tr.s.Phase, _, _ = unstructured.NestedString(wf.Object, "status", "phase")
		tr.s.FinishedAt, _, _ = unstructured.NestedString(wf.Object, "status", "finishedAt")
		tr.s.Completed = wf.GetLabels()[rules.LabelCompleted]
		if tr.s.Completed == "true" {
			tr.s.SeenCompleted = true
			tr.s.SeenCompletedOutputs = podNodeOutputs(wf)
		}
		if tr.s.Phase != "" {
			tr.s.SeenPhase = tr.s.Phase
		}
		if tr.s.FinishedAt != "" {
			tr.s.SeenFinishedAt = tr.s.FinishedAt
		}
	}
}

func (tr *tracker) get() state {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.s
}

// waitFor waits until cond holds for the tracked state or timeout passes; it returns the last state.
func (tr *tracker) waitFor(timeout time.Duration, cond func(state) bool) (state, bool) {
	deadline := time.Now().Add(timeout)
	for {
		s := tr.get()
		if cond(s) {
			return s, true
		}
		if time.Now().After(deadline) {
			return s, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podNodeOutputs returns the output parameters of the workflow's Pod nodes as sorted
// "name=value" strings.
func podNodeOutputs(wf *unstructured.Unstructured) []string {
	nodes, _, _ := unstructured.NestedMap(wf.Object, "status", "nodes")
	var out []string
	for _, n := range nodes {
		n, ok := n.(map[string]any)
		if !ok || n["type"] != "Pod" {
			continue
		}
		params, _, _ := unstructured.NestedSlice(n, "outputs", "parameters")
		for _, p := range params {
			if p, ok := p.(map[string]any); ok {
				out = append(out, fmt.Sprintf("%v=%v", p["name"], p["value"]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// withPodAnnotation sets an annotation on every pod of the workflow (spec.podMetadata).
func withPodAnnotation(key, value string) func(*unstructuredWF) {
	return func(wf *unstructuredWF) {
		ann, _, _ := unstructured.NestedStringMap(wf.Object, "spec", "podMetadata", "annotations")
		if ann == nil {
			ann = map[string]string{}
		}
		ann[key] = value
		if err := unstructured.SetNestedStringMap(wf.Object, ann, "spec", "podMetadata", "annotations"); err != nil {
			panic(err)
		}
	}
}

// nudge annotates the workflow as an operator would, which makes the controller reconcile it
// (its informer sees an update). It stands in for the controller's 20-minute resync, which the
// stuck shape otherwise waits for.
func nudge(ctx context.Context, ns, name string) error {
	wf := &unstructured.Unstructured{}
	wf.SetAPIVersion("argoproj.io/v1alpha1")
	wf.SetKind("Workflow")
	wf.SetNamespace(ns)
	wf.SetName(name)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"e2e.argo-completion-webhook.io/nudge":%q}}}`, time.Now().Format(time.RFC3339Nano))
	err := admin.Patch(ctx, wf, client.RawPatch(types.MergePatchType, []byte(patch)))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// listTaskResults lists the workflow's task results.
func listTaskResults(ctx context.Context, ns, wf string) (*unstructured.UnstructuredList, error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("argoproj.io/v1alpha1")
	list.SetKind("WorkflowTaskResultList")
	err := admin.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf})
	return list, err
}

// taskResultLabels returns the report-outputs-completed label of each of the workflow's task results.
func taskResultLabels(t *testing.T, ns, wf string) []string {
	t.Helper()
	list, err := listTaskResults(context.Background(), ns, wf)
	require.NoError(t, err)
	var out []string
	for _, tr := range list.Items {
		out = append(out, tr.GetLabels()[rules.LabelReportOutputsCompleted])
	}
	return out
}

// podsSucceeded reports whether every pod of the workflow has phase Succeeded.
func podsSucceeded(ctx context.Context, ns, wf string) bool {
	var pods corev1.PodList
	if err := admin.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf}); err != nil || len(pods.Items) == 0 {
		return false
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded {
			return false
		}
	}
	return true
}

// unstructuredWF is a Workflow as submitted.
type unstructuredWF = unstructured.Unstructured
