package deploy

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// The service accounts of deploy/, in its namespace.
const (
	deployNamespace = "argo-completion-webhook"
	webhookAccount  = "argo-completion-webhook"
	repairAccount   = "argo-completion-repair"
)

// The namespaces the access checks ask about besides the deploy namespace: the scoped overlay's
// (Argo's namespace) and one outside every scope.
const (
	scopedNamespace  = "argo"
	outsideNamespace = "outside-scope"
)

// rbacPropagation bounds how long a change of roles and bindings may take to reach the API
// server's authorizer, which reads them through informers: milliseconds on an idle test server.
const rbacPropagation = 15 * time.Second

// grants is what an account may do: "group/resource" ("pods" for the core group) → verbs.
type grants map[string][]string

// access is what an account may do in each namespace, "" standing for all namespaces at once
// (a list or watch across the cluster); a namespace that is absent grants nothing.
type access map[string]grants

// The base's ClusterRoles, and the audit overlay's repair role (no patch, no create). The repair
// may also create localsubjectaccessreviews (not probed here: it changes nothing).
var (
	webhookGrants = grants{
		"pods":                            {"get", "list", "watch"},
		"argoproj.io/workflowtaskresults": {"get", "list"},
	}
	repairGrants = grants{
		"argoproj.io/workflows":           {"get", "list", "watch"},
		"argoproj.io/workflowtaskresults": {"get", "list", "watch", "patch", "create"},
		"pods":                            {"get", "list", "watch"},
	}
	repairReadGrants = grants{
		"argoproj.io/workflows":           {"get", "list", "watch"},
		"argoproj.io/workflowtaskresults": {"get", "list", "watch"},
		"pods":                            {"get", "list", "watch"},
	}
)

// What every access check asks about: each verb on what the accounts read, and on Workflows and
// Secrets, which neither may touch; in each namespace of interest and across all of them.
var (
	probedResources = []schema.GroupResource{
		{Resource: "pods"}, {Resource: "secrets"},
		{Group: "argoproj.io", Resource: "workflows"}, {Group: "argoproj.io", Resource: "workflowtaskresults"},
	}
	probedVerbs      = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	probedNamespaces = []string{"", deployNamespace, scopedNamespace, outsideNamespace}
)

// everywhere is g in every namespace, as a ClusterRoleBinding grants it.
func everywhere(g grants) access {
	a := access{}
	for _, ns := range probedNamespaces {
		a[ns] = g
	}
	return a
}

// allows says whether a grants verb on resource in namespace ns.
func (a access) allows(ns string, gr schema.GroupResource, verb string) bool {
	key := gr.Resource
	if gr.Group != "" {
		key = gr.Group + "/" + gr.Resource
	}
	return slices.Contains(a[ns][key], verb)
}

// rbacKinds are the kinds applyRBAC installs for real.
var rbacKinds = map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}

// installedRBAC holds the objects applyRBAC last installed, by kind, namespace and name.
var installedRBAC = map[string]*unstructured.Unstructured{}

// applyRBAC installs, for real, the Namespaces and the RBAC objects of a rendering, and removes
// those a previous call installed that it does not hold, so the API server authorizes the service
// accounts exactly as the rendering deploys them. Callers wait for the authorizer with
// awaitAccess.
func applyRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	ensureDeployNamespace(t) // the chart's release namespace, which the operator creates
	rendered := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		switch {
		case o.GetKind() == "Namespace":
			if err := admin.Create(ctx, o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				require.NoError(t, err, "creating namespace %s", o.GetName())
			}
		case rbacKinds[o.GetKind()]:
			rendered[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
		}
	}
	for _, o := range rendered {
		if ns := o.GetNamespace(); ns != "" {
			ensureNamespace(t, ns) // the scoped overlay's Roles live in Argo's namespace
		}
		err := admin.Create(ctx, o.DeepCopy())
		if apierrors.IsAlreadyExists(err) {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(o.GroupVersionKind())
			require.NoError(t, admin.Get(ctx, client.ObjectKeyFromObject(o), cur))
			next := o.DeepCopy()
			next.SetResourceVersion(cur.GetResourceVersion())
			err = admin.Update(ctx, next)
		}
		require.NoError(t, err, "installing %s %s", o.GetKind(), o.GetName())
	}
	for key, o := range installedRBAC {
		if _, ok := rendered[key]; !ok {
			if err := admin.Delete(ctx, o.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
				require.NoError(t, err, "removing %s %s", o.GetKind(), o.GetName())
			}
		}
	}
	installedRBAC = rendered
}

// asServiceAccount returns a config impersonating a service account of the deploy namespace.
func asServiceAccount(name string) *rest.Config {
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + deployNamespace + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + deployNamespace, "system:authenticated"}}
	return cfg
}

// awaitAccess asks the API server, impersonating account, whether it may do each probed verb on
// each probed resource in each probed namespace, until every answer is want's (the authorizer
// follows role changes a moment late) or rbacPropagation has passed; then it fails with each
// answer that differs.
func awaitAccess(t *testing.T, account string, want access) {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, authorizationv1.AddToScheme(scheme))
	c, err := client.New(asServiceAccount(account), client.Options{Scheme: scheme})
	require.NoError(t, err)
	ctx := context.Background()
	var wrong []string
	for deadline := time.Now().Add(rbacPropagation); ; time.Sleep(100 * time.Millisecond) {
		wrong = wrong[:0]
		for _, ns := range probedNamespaces {
			for _, gr := range probedResources {
				for _, verb := range probedVerbs {
					review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
						ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: gr.Group, Resource: gr.Resource}}}
					require.NoError(t, c.Create(ctx, review))
					if allowed := review.Status.Allowed; allowed != want.allows(ns, gr, verb) {
						where := "in namespace " + ns
						if ns == "" {
							where = "across all namespaces"
						}
						wrong = append(wrong, fmt.Sprintf("%s %s %s: allowed=%t", verb, gr, where, allowed))
					}
				}
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	assert.Empty(t, wrong, "what %s may do (SelfSubjectAccessReviews by impersonation)", account)
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
	assert.True(t, apierrors.IsForbidden(c.List(ctx, &secrets, client.InNamespace(deployNamespace))), "reading Secrets is refused")
	assert.True(t, apierrors.IsForbidden(c.Delete(ctx, obj)), "deleting a %s is refused", obj.GetObjectKind().GroupVersionKind().Kind)
}

// clusterRoleRules returns the rules of the rendered ClusterRole name.
func clusterRoleRules(t *testing.T, objs []*unstructured.Unstructured, name string) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(find(t, objs, "ClusterRole", name).Object, &role))
	return role.Rules
}

func TestWebhookWorksWithExactlyTheDeployedRBAC(t *testing.T) {
	assert.Equal(t, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}, clusterRoleRules(t, render(t, kustomize("deploy")), webhookAccount), "the webhook's ClusterRole grants exactly pods read, task-result get/list and events create/patch")
	applyRBAC(t, render(t, kustomize("deploy")))
	awaitAccess(t, webhookAccount, everywhere(webhookGrants))
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}}))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "wf-main-1", Namespace: "rbac",
			Labels:      map[string]string{rules.LabelWorkflow: "wf"},
			Annotations: map[string]string{rules.AnnotationNodeID: "wf-1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "argoexec", Command: []string{"argoexec", "resource", "get"}}}},
	}
	require.NoError(t, admin.Create(ctx, pod))

	// The webhook, run as the service account, syncs its pod cache (list/watch) and decides.
	hook, err := harness.StartWebhook(harness.WebhookOptions{Dir: t.TempDir(), RESTConfig: asServiceAccount(webhookAccount), Mode: webhook.ModeEnforce})
	require.NoError(t, err, "the webhook becomes ready as the deployed service account")
	defer hook.Stop()
	require.NoError(t, harness.Register(ctx, admin, hook, "rbac"))
	defer func() { require.NoError(t, harness.Unregister(ctx, admin)) }()
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "wf-1", "namespace": "rbac", "labels": map[string]any{
			rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}},
	}}
	require.NoError(t, admin.Create(ctx, tr))
	assert.Equal(t, "true", tr.GetLabels()[rules.LabelReportOutputsCompleted], "patched using pods read as the service account")

	// Rule B2's reads: a list of a workflow's task results and a GET of one, and no watch.
	cfg := asServiceAccount(webhookAccount)
	sa, err := client.New(cfg, client.Options{Scheme: harness.Scheme()})
	require.NoError(t, err)
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(tr.GroupVersionKind())
	assert.NoError(t, sa.Get(ctx, client.ObjectKeyFromObject(tr), got), "getting a task result is allowed")
	results := &unstructured.UnstructuredList{}
	results.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "WorkflowTaskResultList"})
	assert.NoError(t, sa.List(ctx, results, client.InNamespace("rbac")), "listing task results is allowed")

	// And nothing more: no Workflow writes, no Secrets, no writes to pods or task results.
	assertRefused(t, cfg, "rbac", pod)
	assert.True(t, apierrors.IsForbidden(sa.Update(ctx, tr.DeepCopy())), "writing a task result is refused")
	var pods corev1.PodList
	assert.NoError(t, sa.List(ctx, &pods, client.InNamespace("rbac")), "listing pods is allowed")
}

func TestRepairWorksWithExactlyTheDeployedRBAC(t *testing.T) {
	applyRBAC(t, render(t, kustomize("deploy")))
	awaitAccess(t, repairAccount, everywhere(repairGrants))
	ctx := context.Background()
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "repair-rbac"}}))
	tr := createStuckTaskResult(t, "repair-rbac", "wf")

	cfg := asServiceAccount(repairAccount)
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: cfg, AllNamespaces: true, Apply: true,
		Now: afterOrphanGrace, ConfirmAfter: 10 * time.Millisecond, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, "the repair runs as its deployed service account: %s", out.String())
	assert.Equal(t, 1, sum.Repaired, out.String())

	assertRefused(t, cfg, "repair-rbac", tr)
}
