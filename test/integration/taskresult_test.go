package integration

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// The argoexec v3.5.4 `resource` command's only write: a create with outputs and "false".
func TestExecutorV354ResourceCreateIsCompleted(t *testing.T) {
	for name, podName := range map[string]bool{
		"token names the writer pod": true,
		"token names no pod":         false,
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t, map[bool]string{true: "res-bound", false: "res-legacy"}[podName], false)
			createPod(t, argoNS, n)
			extra := ""
			if podName {
				extra = n.pod
			}
			executor, _ := clientAs(t, executorSA, extra)
			require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("pi-x2"))))
			v, _ := persistedLabel(t, argoNS, n)
			assert.Equal(t, "true", v, "the persisted task result is complete")
		})
	}
}

func TestExecutorV354DataCreateIsCompleted(t *testing.T) {
	n := newNode(t, "data", false)
	createPod(t, argoNS, n, "argoexec", "data", `{"source":{"artifactPaths":{}}}`)
	executor, _ := clientAs(t, executorSA, n.pod)
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", map[string]any{"result": `["a","b"]`})))
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "true", v)
}

// An executor older than v3.5.2 sets no label at all.
func TestOldExecutorWithoutLabelIsCompleted(t *testing.T) {
	n := newNode(t, "old-exec", true)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, "")
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "", resourceOutputs("x"))))
	v, ok := persistedLabel(t, argoNS, n)
	assert.True(t, ok)
	assert.Equal(t, "true", v)
}

// A container template: the wait container writes placeholder, outputs, then its own label patch.
func TestContainerTemplateIsLeftToItsWaitContainer(t *testing.T) {
	n := newNode(t, "container", true)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, n.pod)
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", nil)))
	mergePatch(t, executor, argoNS, n, `{"outputs":{"parameters":[{"name":"p","value":"v"}],"exitCode":"0"}}`)
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "the webhook leaves a wait pod's result to FinalizeOutput")

	mergePatch(t, executor, argoNS, n, `{"metadata":{"labels":{"workflows.argoproj.io/report-outputs-completed":"true"}}}`)
	v, _ = persistedLabel(t, argoNS, n)
	assert.Equal(t, "true", v, "FinalizeOutput's own patch completes it")
}

// The v3.5.5+ resource sequence: placeholder, progress, then outputs as a merge patch.
func TestPlaceholderAndProgressAreUntouchedAndOutputsPatchCompletes(t *testing.T) {
	n := newNode(t, "v355-resource", false)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, n.pod)

	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", nil)))
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "placeholder create is untouched")

	mergePatch(t, executor, argoNS, n, `{"progress":"0/1"}`)
	v, _ = persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "progress-only patch is untouched")

	mergePatch(t, executor, argoNS, n, `{"outputs":{"parameters":[{"name":"job-name","value":"pi-x2"}]}}`)
	v, _ = persistedLabel(t, argoNS, n)
	assert.Equal(t, "true", v, "the outputs patch of a wait-less pod completes the result")
}

func TestWriterForAnotherPodIsIgnored(t *testing.T) {
	n := newNode(t, "spoof", false)
	createPod(t, argoNS, n)
	other := newNode(t, "spoof-other", false)
	createPod(t, argoNS, other)
	executor, _ := clientAs(t, executorSA, other.pod)
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("x"))))
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v, "a writer may only complete its own node's result")
}

func TestTaskResultWithoutPodIsIgnored(t *testing.T) {
	n := newNode(t, "no-pod", false)
	executor, _ := clientAs(t, executorSA, "")
	require.NoError(t, executor.Create(context.Background(), taskResult(argoNS, n, "false", resourceOutputs("x"))))
	v, _ := persistedLabel(t, argoNS, n)
	assert.Equal(t, "false", v)
}

func TestServerSideDryRunShowsThePatchAndPersistsNothing(t *testing.T) {
	n := newNode(t, "dry-run", false)
	createPod(t, argoNS, n)
	executor, _ := clientAs(t, executorSA, n.pod)
	tr := taskResult(argoNS, n, "false", resourceOutputs("x"))
	require.NoError(t, executor.Create(context.Background(), tr, client.DryRunAll))
	assert.Equal(t, "true", tr.GetLabels()[rules.LabelReportOutputsCompleted], "the dry-run response carries the corrected label")

	err := admin.Get(context.Background(), client.ObjectKey{Namespace: argoNS, Name: n.id}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult"}})
	assert.True(t, apierrors.IsNotFound(err), "nothing persisted: %v", err)
}

// The webhook never calls itself for its own namespace, so it can never block its own restart.
func TestWebhookNamespaceIsExcluded(t *testing.T) {
	const ns = "argo-completion-webhook"
	n := newNode(t, "own-ns", false)
	createPod(t, ns, n)
	before := scrape(t, enforce.Metrics, harness.RequestsSeries(webhook.TaskResultPath))
	executor, _ := clientAs(t, "system:serviceaccount:argo-completion-webhook:default", "")
	require.NoError(t, executor.Create(context.Background(), taskResult(ns, n, "false", resourceOutputs("x"))))
	v, _ := persistedLabel(t, ns, n)
	assert.Equal(t, "false", v)
	assert.Equal(t, before, scrape(t, enforce.Metrics, harness.RequestsSeries(webhook.TaskResultPath)), "no admission request was sent")
}
