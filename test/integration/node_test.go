package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// The ARGO_TEMPLATE of each kind of pod the simulated node plays.
var simulatedTemplates = map[string]string{
	"container": `{"name":"main","container":{"image":"argoproj/argosay:v2"},"outputs":{"parameters":[{"name":"greeting","valueFrom":{"path":"/tmp/greeting"}}]}}`,
	"resource":  `{"name":"main","resource":{"action":"create","manifest":"kind: ConfigMap"},"outputs":{"parameters":[{"name":"name","valueFrom":{"jsonPath":"{.metadata.name}"}}]}}`,
	"data":      `{"name":"main","data":{"source":{"artifactPaths":{"name":"b"}},"transformation":[]}}`,
}

// createSimulatedPod creates a workflow pod as the controller would for a template of kind
// (simulatedTemplates), with ARGO_TEMPLATE on its init container and the given annotations.
func createSimulatedPod(t *testing.T, ns, name, kind string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	image := "quay.io/argoproj/argoexec:v3.5.4"
	env := []corev1.EnvVar{{Name: "ARGO_TEMPLATE", Value: simulatedTemplates[kind]}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:      map[string]string{rules.LabelWorkflow: "wf-" + name, rules.LabelCompleted: "false"},
			Annotations: map[string]string{rules.AnnotationNodeID: name + "-id"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "wf-" + name, UID: types.UID("uid-" + name),
			}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: image, Command: []string{"argoexec", "init"}, Env: env}},
			Containers:     []corev1.Container{{Name: "main", Image: image, Command: []string{"argoexec", kind}}},
		},
	}
	if kind == "container" {
		pod.Spec.Containers = []corev1.Container{
			{Name: "wait", Image: image, Command: []string{"argoexec", "wait"}},
			{Name: "main", Image: "argoproj/argosay:v2", Command: []string{"/var/run/argo/argoexec", "emissary", "--", "/argosay"}},
		}
	}
	for k, v := range annotations {
		pod.Annotations[k] = v
	}
	require.NoError(t, admin.Create(context.Background(), pod))
	t.Cleanup(func() { _ = admin.Delete(context.Background(), pod) })
	return pod
}

// The simulated node (test/harness.Node) must send argoexec's requests, in argoexec's order, for
// each template kind, executor version and fault. Each case runs one hand-made pod through the node
// against the real API server with the webhook registered, and checks the node's steps, how many
// requests reached the webhook and the task result's final label.
func TestSimulatedNodeSendsArgoexecsRequests(t *testing.T) {
	const ns = "node-sim"
	ctx, cancel := context.WithCancel(context.Background())
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "executor", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "executor"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
		},
	} {
		require.NoError(t, admin.Create(ctx, o))
	}
	node := &harness.Node{Admin: admin, Config: adminCfg, Namespace: ns, Executor: harness.ExecutorV354, Logf: t.Logf}
	done := make(chan struct{})
	go func() { node.Run(ctx); close(done) }()
	defer func() {
		cancel()
		<-done
		assert.Empty(t, node.Errors(), "no node errors: the RBAC refusals are expected ones")
	}()

	const (
		running   = "kubelet update pods/status Running"
		succeeded = "kubelet update pods/status Succeeded"
		init      = "InitializeOutput create workflowtaskresults"
		rejected  = "ReportOutputs create workflowtaskresults outputs: AlreadyExists"
		created   = "ReportOutputs create workflowtaskresults outputs"
		patched   = "ReportOutputs patch workflowtaskresults outputs"
		finalized = "FinalizeOutput patch workflowtaskresults label"
		label     = "workflows.argoproj.io/report-outputs-completed"
	)
	v37 := map[string]string{harness.ExecutorAnnotation: string(harness.ExecutorV37)}
	v355 := map[string]string{harness.ExecutorAnnotation: string(harness.ExecutorV355)}
	v351 := map[string]string{harness.ExecutorAnnotation: string(harness.ExecutorV351)}
	with := func(a map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for ak, av := range a {
			out[ak] = av
		}
		return out
	}
	for name, tc := range map[string]struct {
		kind        string
		annotations map[string]string
		steps       []string
		requests    int    // task-result admission requests that reach the webhook
		label       string // the task result's final label; "" when there is no task result
		lateBy      time.Duration
		podOwned    bool // the task result is owned by its Pod (argoexec ≤ v3.5.1)
	}{
		"v3.5.1 wait container: one Create without the label, owned by the pod (A1b labels it)": {
			kind: "container", annotations: v351,
			steps: []string{running, created, succeeded}, requests: 1, label: "true", podOwned: true,
		},
		"v3.5 wait container: placeholder, rejected Create, outputs patch, label": {
			kind:  "container",
			steps: []string{running, init, rejected, patched, finalized, succeeded}, requests: 2, label: "true",
		},
		"v3.7 wait container patches after its own Create": {
			kind: "container", annotations: v37,
			steps: []string{running, init, patched, finalized, succeeded}, requests: 1, label: "true",
		},
		"wait container of a failed main still reports and finalizes": {
			kind: "container", annotations: map[string]string{harness.ExitCodeAnnotation: "3"},
			steps: []string{running, init, rejected, patched, finalized, "kubelet update pods/status Failed main=3(Error)"}, requests: 2, label: "true",
		},
		"v3.5.4 resource: one Create with outputs, never finalized": {
			kind:  "resource",
			steps: []string{running, created, succeeded}, requests: 1, label: "true", // the webhook's A1
		},
		"v3.5.4 failed resource exits before its only write": {
			kind: "resource", annotations: map[string]string{harness.ExitCodeAnnotation: "1"},
			steps: []string{running, "kubelet update pods/status Failed main=1(Error)"},
		},
		"v3.5.5 resource: placeholder, rejected Create, outputs patch, label": {
			kind: "resource", annotations: v355,
			steps: []string{running, init, rejected, patched, finalized, succeeded}, requests: 2, label: "true",
		},
		"v3.5.5 failed resource: placeholder and the deferred label": {
			kind: "resource", annotations: with(v355, harness.ExitCodeAnnotation, "1"),
			steps: []string{running, init, finalized, "kubelet update pods/status Failed main=1(Error)"}, label: "true",
		},
		"v3.5.5 data: placeholder, rejected Create, outputs patch, label": {
			kind: "data", annotations: v355,
			steps: []string{running, init, rejected, patched, finalized, succeeded}, requests: 2, label: "true",
		},
		"v3.7 data patches after its own Create": {
			kind: "data", annotations: v37,
			steps: []string{running, init, patched, finalized, succeeded}, requests: 1, label: "true",
		},
		"late writes: pod terminated first, the wait container's last writes a second later": {
			kind: "container", annotations: map[string]string{harness.LateWritesAnnotation: "1s"}, lateBy: time.Second,
			steps: []string{running, init, succeeded, rejected, patched, finalized}, requests: 2, label: "true",
		},
		"R5: FinalizeOutput gives up, pod Succeeded": {
			kind: "container", annotations: map[string]string{harness.WaitDiesAfterReportAnnotation: "true"},
			steps: []string{running, init, rejected, patched, succeeded}, requests: 2, label: "false",
		},
		"R3: wait OOM-killed after ReportOutputs": {
			kind: "container", annotations: map[string]string{harness.WaitKilledAfterReportAnnotation: "true"},
			steps: []string{running, init, rejected, patched, "kubelet update pods/status Failed wait=137(OOMKilled)"}, requests: 2, label: "false",
		},
		"R4: pod deleted after the placeholder": {
			kind: "container", annotations: map[string]string{harness.PodDeletedMidRunAnnotation: "true"},
			steps: []string{running, init, "eviction delete pods"}, label: "false",
		},
		"R6: v3.5.5 resource main killed before FinalizeOutput": {
			kind: "resource", annotations: with(v355, harness.MainKilledBeforeFinalizeAnnotation, "137"),
			steps: []string{running, init, "kubelet update pods/status Failed main=137(Error)"}, label: "false",
		},
		"R2: v3.5 wait refused, its pod-annotation fallback refused too, exits 1": {
			kind: "container", annotations: map[string]string{harness.RBACRefusedAnnotation: "true"},
			steps: []string{
				running,
				"InitializeOutput create workflowtaskresults: Forbidden",
				"InitializeOutput patch pods " + label + ": Forbidden",
				"ReportOutputs create workflowtaskresults outputs: Forbidden",
				"ReportOutputs patch pods workflows.argoproj.io/outputs: Forbidden",
				"FinalizeOutput patch workflowtaskresults label: Forbidden",
				"FinalizeOutput patch pods " + label + ": Forbidden",
				"kubelet update pods/status Failed wait=1(Error)",
			},
		},
		"R2: v3.7 wait refused without fallback, exits 64": {
			kind: "container", annotations: with(v37, harness.RBACRefusedAnnotation, "true"),
			steps: []string{
				running,
				"InitializeOutput create workflowtaskresults: Forbidden",
				"ReportOutputs create workflowtaskresults outputs: Forbidden",
				"FinalizeOutput patch workflowtaskresults label: Forbidden",
				"kubelet update pods/status Failed wait=64(Error)",
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			series := harness.RequestsSeries(webhook.TaskResultPath)
			before := scrape(t, enforce.Metrics, series)
			podName := fmt.Sprintf("sim-%d", time.Now().UnixNano())
			createSimulatedPod(t, ns, podName, tc.kind, tc.annotations)
			require.Eventually(t, func() bool { return node.Finished(podName) }, 20*time.Second, 50*time.Millisecond, "the node finished the pod")

			steps := node.Steps(podName)
			var got []string
			for _, s := range steps {
				got = append(got, s.String())
			}
			assert.Equal(t, tc.steps, got)
			assert.Equal(t, float64(tc.requests), scrape(t, enforce.Metrics, series)-before, "task-result admission requests")

			tr := &unstructured.Unstructured{}
			tr.SetGroupVersionKind(taskResultGVK)
			err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: podName + "-id"}, tr)
			if tc.label == "" {
				assert.True(t, apierrors.IsNotFound(err), "no task result: %v", err)
			} else if assert.NoError(t, err) {
				assert.Equal(t, tc.label, tr.GetLabels()[label])
				owners := tr.GetOwnerReferences()
				if assert.Len(t, owners, 1) {
					assert.Equal(t, map[bool]string{true: "Pod", false: "Workflow"}[tc.podOwned], owners[0].Kind, "the task result's owner")
				}
			}
			if tc.lateBy > 0 && len(steps) == len(tc.steps) {
				assert.GreaterOrEqual(t, steps[3].At.Sub(steps[2].At), tc.lateBy, "ReportOutputs lands after the pod terminated, by the annotation's duration")
			}
		})
	}
}
