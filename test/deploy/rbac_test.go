package deploy

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// applyRBAC creates the rendered Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding
// for real, so the API server authorizes the service account exactly as deployed.
func applyRBAC(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, o := range render(t, "deploy") {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			if err := admin.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
				require.NoError(t, err, "creating %s %s", o.GetKind(), o.GetName())
			}
		}
	}
}

// asServiceAccount returns a config impersonating a service account of the deploy namespace.
func asServiceAccount(name string) *rest.Config {
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:argo-completion-webhook:" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:argo-completion-webhook", "system:authenticated"}}
	return cfg
}

// assertRefused checks that the account behind cfg may neither create a Workflow in ns, read the
// deploy namespace's Secrets, nor delete obj.
func assertRefused(t *testing.T, cfg *rest.Config, ns string, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	c, err := client.New(cfg, client.Options{Scheme: harness.Scheme()})
	require.NoError(t, err)
	wf := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": "wf", "namespace": ns}, "spec": map[string]any{}}}
	assert.True(t, apierrors.IsForbidden(c.Create(ctx, wf)), "creating a Workflow is refused")
	var secrets corev1.SecretList
	assert.True(t, apierrors.IsForbidden(c.List(ctx, &secrets, client.InNamespace("argo-completion-webhook"))), "reading Secrets is refused")
	assert.True(t, apierrors.IsForbidden(c.Delete(ctx, obj)), "deleting a %s is refused", obj.GetObjectKind().GroupVersionKind().Kind)
}

func TestWebhookWorksWithExactlyTheDeployedRBAC(t *testing.T) {
	applyRBAC(t)
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}}))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "wf-main-1", Namespace: "rbac",
			Labels:      map[string]string{webhook.LabelWorkflow: "wf"},
			Annotations: map[string]string{webhook.AnnotationNodeID: "wf-1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "argoexec", Command: []string{"argoexec", "resource", "get"}}}},
	}
	require.NoError(t, admin.Create(ctx, pod))

	// The webhook, run as the service account, syncs its pod cache (list/watch) and decides.
	hook, err := harness.StartWebhook(harness.WebhookOptions{Dir: t.TempDir(), RESTConfig: asServiceAccount("argo-completion-webhook"), Mode: webhook.ModeEnforce})
	require.NoError(t, err, "the webhook becomes ready as the deployed service account")
	defer hook.Stop()
	require.NoError(t, harness.Register(ctx, admin, hook, "rbac"))
	defer func() { require.NoError(t, harness.Unregister(ctx, admin)) }()
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "wf-1", "namespace": "rbac", "labels": map[string]any{
			webhook.LabelWorkflow: "wf", webhook.LabelReportOutputsCompleted: "false"}},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}},
	}}
	require.NoError(t, admin.Create(ctx, tr))
	assert.Equal(t, "true", tr.GetLabels()[webhook.LabelReportOutputsCompleted], "patched using pods read as the service account")

	// And nothing more: no Workflow writes, no Secrets, no writes to pods or task results.
	cfg := asServiceAccount("argo-completion-webhook")
	assertRefused(t, cfg, "rbac", pod)
	sa, err := client.New(cfg, client.Options{Scheme: harness.Scheme()})
	require.NoError(t, err)
	tr2 := tr.DeepCopy()
	assert.True(t, apierrors.IsForbidden(sa.Update(ctx, tr2)), "writing a task result is refused")
	var pods corev1.PodList
	assert.NoError(t, sa.List(ctx, &pods, client.InNamespace("rbac")), "listing pods is allowed")
}

func TestRepairWorksWithExactlyTheDeployedRBAC(t *testing.T) {
	applyRBAC(t)
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "repair-rbac"}}))
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "wf-1", "namespace": "repair-rbac", "labels": map[string]any{
			webhook.LabelWorkflow: "wf", webhook.LabelReportOutputsCompleted: "false"}},
		"outputs": map[string]any{},
	}}
	require.NoError(t, admin.Create(ctx, tr))

	cfg := asServiceAccount("argo-completion-repair")
	var out bytes.Buffer
	// The pod is gone and the result is new: the clock is moved past the 10m orphan grace.
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: cfg, AllNamespaces: true, Apply: true,
		Now: func() time.Time { return time.Now().Add(repair.DefaultOrphanGrace + time.Minute) }, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, "the repair runs as its deployed service account: %s", out.String())
	assert.Equal(t, 1, sum.Repaired, out.String())

	assertRefused(t, cfg, "repair-rbac", tr)
}
