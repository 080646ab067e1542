package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

var (
	taskResultGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "WorkflowTaskResult"}
	workflowGVK   = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Workflow"}
)

// clientAs returns a client impersonating user; podName, when set, is the pod-name extra a bound
// service-account token carries.
func clientAs(t *testing.T, user, podName string) (client.Client, *harness.Warnings) {
	t.Helper()
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	if podName != "" {
		cfg.Impersonate.Extra = map[string][]string{rules.ExtraPodName: {podName}}
	}
	w := &harness.Warnings{}
	cfg.WarningHandlerWithContext = nil
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)
	return c, w
}

// node describes one Pod node of a workflow: its ID (the task result's name), its pod's name and
// whether the pod has a wait container.
type node struct {
	workflow string
	id       string
	pod      string
	wait     bool
	wfUID    types.UID
}

// newNode makes a node of a fresh workflow whose name is unique to the test.
func newNode(t *testing.T, suffix string, wait bool) node {
	t.Helper()
	wf := fmt.Sprintf("wf-%s", suffix)
	return node{workflow: wf, id: wf + "-3571860313", pod: wf + "-main-3571860313", wait: wait, wfUID: types.UID("uid-" + suffix)}
}

// createPod creates the node's pod as the controller does: labelled with the workflow, annotated
// with the node ID, owned by the workflow. Resource and data pods run only main
// (`argoexec resource get` / `argoexec data`); container pods also run wait.
func createPod(t *testing.T, ns string, n node, command ...string) *corev1.Pod {
	t.Helper()
	if len(command) == 0 {
		command = []string{"argoexec", "resource", "get"}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.pod,
			Namespace:   ns,
			Labels:      map[string]string{rules.LabelWorkflow: n.workflow, rules.LabelCompleted: "false"},
			Annotations: map[string]string{rules.AnnotationNodeID: n.id},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: n.workflow, UID: n.wfUID,
			}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "quay.io/argoproj/argoexec:v3.5.4", Command: []string{"argoexec", "init"}}},
			Containers:     []corev1.Container{{Name: "main", Image: "quay.io/argoproj/argoexec:v3.5.4", Command: command}},
		},
	}
	if n.wait {
		pod.Spec.Containers = append([]corev1.Container{{Name: "wait", Image: "quay.io/argoproj/argoexec:v3.5.4", Command: []string{"argoexec", "wait"}}}, pod.Spec.Containers...)
		pod.Spec.Containers[1].Command = []string{"/var/run/argo/argoexec", "emissary", "--", "sh", "-c", "echo hi"}
	}
	require.NoError(t, admin.Create(context.Background(), pod))
	t.Cleanup(func() { _ = admin.Delete(context.Background(), pod) })
	return pod
}

// terminatePod reports every container of the pod terminated, as the kubelet would.
func terminatePod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: metav1.Now(), FinishedAt: metav1.Now()}},
		})
	}
	require.NoError(t, admin.Status().Update(context.Background(), pod))
}

// taskResult builds a WorkflowTaskResult as argoexec writes it: labels workflow and
// report-outputs-completed (unless label is ""), the Workflow owner, and outputs when given.
func taskResult(ns string, n node, label string, outputs map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	u.SetName(n.id)
	u.SetNamespace(ns)
	labels := map[string]string{rules.LabelWorkflow: n.workflow}
	if label != "" {
		labels[rules.LabelReportOutputsCompleted] = label
	}
	u.SetLabels(labels)
	u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: n.workflow, UID: n.wfUID}})
	if outputs != nil {
		u.Object["outputs"] = outputs
	}
	return u
}

// resourceOutputs is what `argoexec resource` reports for an outputs.parameters template.
func resourceOutputs(value string) map[string]any {
	return map[string]any{"parameters": []any{map[string]any{"name": "job-name", "value": value, "valueFrom": map[string]any{"jsonPath": "{.metadata.name}"}}}}
}

// persistedLabel reads the task result back from the API server and returns its label.
func persistedLabel(t *testing.T, ns string, n node) (string, bool) {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	require.NoError(t, admin.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: n.id}, u))
	v, ok := u.GetLabels()[rules.LabelReportOutputsCompleted]
	return v, ok
}

// mergePatch sends a JSON merge patch, as argoexec's patchTaskResult and patchTaskResultLabels do.
func mergePatch(t *testing.T, c client.Client, ns string, n node, patch string) {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	u.SetNamespace(ns)
	u.SetName(n.id)
	require.NoError(t, c.Patch(context.Background(), u, client.RawPatch(types.MergePatchType, []byte(patch))))
}

// writeAsArgoexecV35 sends, as c, the task-result requests of a v3.5 wait container or of a
// v3.5.5+ resource or data pod (argoexec's upsertTaskResult, workflow/executor/taskresult.go), in
// order, and returns how many it sent (4):
//
//  1. InitializeOutput: the placeholder Create (no outputs key);
//  2. ReportOutputs: a Create with the outputs and label "false", which passes mutating admission
//     and is then rejected by storage with AlreadyExists;
//  3. ReportOutputs: the merge patch of the NodeResult (outputs and a null creationTimestamp, no labels);
//  4. FinalizeOutput: the label merge patch to "true".
func writeAsArgoexecV35(t *testing.T, c client.Client, ns string, n node, outputs map[string]any) int {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, c.Create(ctx, taskResult(ns, n, "false", nil)), "InitializeOutput")
	err := c.Create(ctx, taskResult(ns, n, "false", outputs))
	require.True(t, apierrors.IsAlreadyExists(err), "ReportOutputs' Create is rejected with AlreadyExists, got %v", err)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"creationTimestamp": nil}, "outputs": outputs})
	require.NoError(t, err)
	mergePatch(t, c, ns, n, string(body))
	mergePatch(t, c, ns, n, `{"metadata":{"creationTimestamp":null,"labels":{"workflows.argoproj.io/report-outputs-completed":"true"}}}`)
	return 4
}

func clientKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
