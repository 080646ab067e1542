package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// install is one rendering of the webhook's install: its repair CronJob's arguments, what its
// webhook's arguments say, what its accounts may do, and what its repair run makes of a stuck
// task result in the scoped namespace and one outside.
type install struct {
	src        source
	repairArgs []string
	hook       webhookWant
	webhook    access
	repair     access
	// verdicts is the repair's verdict per namespace; a namespace absent is never scanned.
	verdicts map[string]string
}

// webhookWant is what an install's webhook arguments must set.
type webhookWant struct {
	mode                 webhook.Mode
	namespaces           []string
	archive              bool
	archiveLabelSelector string
}

// What an install that repairs every namespace, one that only reports, and one scoped to Argo's
// namespace expect of their repair.
var (
	repairEverywhere   = []string{"repair", "--all-namespaces", "--apply", "--fail-on-manual"}
	reportEverywhere   = []string{"repair", "--all-namespaces", "--fail-on-manual"}
	repairScoped       = []string{"repair", "--namespaces=" + scopedNamespace, "--apply", "--fail-on-manual"}
	repairedEverywhere = map[string]string{scopedNamespace: repair.VerdictRepaired, outsideNamespace: repair.VerdictRepaired}
	reportedEverywhere = map[string]string{scopedNamespace: repair.VerdictRepair, outsideNamespace: repair.VerdictRepair}
	repairedScoped     = map[string]string{scopedNamespace: repair.VerdictRepaired}
	enforce            = webhookWant{mode: webhook.ModeEnforce}
)

// installs are the renderings of allSources, and one more of the chart (repair.apply=false).
var installs = map[string]install{
	"the base repairs every namespace": {
		src: kustomize("deploy"), repairArgs: repairEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the audit overlay only reports and cannot patch anywhere": {
		src: kustomize("deploy/overlays/audit"), repairArgs: reportEverywhere, hook: webhookWant{mode: webhook.ModeAudit},
		webhook: everywhere(webhookGrants), repair: everywhere(repairReadGrants), verdicts: reportedEverywhere,
	},
	"the scoped overlay reads and repairs only in its namespaces": {
		src: kustomize("deploy/overlays/scoped"), repairArgs: repairScoped,
		hook:    webhookWant{mode: webhook.ModeEnforce, namespaces: []string{scopedNamespace}, archive: true},
		webhook: access{scopedNamespace: webhookGrants}, repair: access{scopedNamespace: repairGrants}, verdicts: repairedScoped,
	},
	"the base with the monitoring component keeps the base's access": {
		src: kustomize("deploy", monitoringComponent), repairArgs: repairEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the chart's defaults repair every namespace": {
		src: chart(), repairArgs: repairEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the chart in audit mode only reports and cannot patch anywhere": {
		src: chart("ci/audit-values.yaml"), repairArgs: reportEverywhere, hook: webhookWant{mode: webhook.ModeAudit},
		webhook: everywhere(webhookGrants), repair: everywhere(repairReadGrants), verdicts: reportedEverywhere,
	},
	"the chart scoped to Argo's namespace reads and repairs only there": {
		src: chart("ci/scoped-values.yaml"), repairArgs: repairScoped,
		hook:    webhookWant{mode: webhook.ModeEnforce, namespaces: []string{scopedNamespace}},
		webhook: access{scopedNamespace: webhookGrants}, repair: access{scopedNamespace: repairGrants}, verdicts: repairedScoped,
	},
	"the chart signed by an existing issuer keeps the defaults' access": {
		src: chart("ci/existing-issuer-values.yaml"), repairArgs: repairEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the chart for an archiving controller keeps the defaults' access": {
		src: chart("ci/archive-values.yaml"), repairArgs: repairEverywhere,
		hook: webhookWant{mode: webhook.ModeEnforce, archive: true,
			archiveLabelSelector: "workflows.argoproj.io/archive-strategy!=false"},
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the chart with monitoring keeps the defaults' access": {
		src: chart("ci/monitoring-values.yaml"), repairArgs: repairEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairGrants), verdicts: repairedEverywhere,
	},
	"the chart's repair without apply only reports and cannot patch anywhere": {
		src: chart("repair.apply=false"), repairArgs: reportEverywhere, hook: enforce,
		webhook: everywhere(webhookGrants), repair: everywhere(repairReadGrants), verdicts: reportedEverywhere,
	},
}

func TestEveryRenderingHasItsInstallExpectations(t *testing.T) {
	covered := map[string]bool{}
	for _, in := range installs {
		covered[in.src.name] = true
	}
	for _, src := range allSources() {
		assert.True(t, covered[src.name], "%s has an entry in installs: what its arguments and accounts must be", src.name)
	}
}

// taskResults is the resource the repair patches.
var taskResults = schema.GroupResource{Group: "argoproj.io", Resource: "workflowtaskresults"}

// containerArgs returns the arguments of the first container of the rendered kind/name, whose
// pod template is at path.
func containerArgs(t *testing.T, objs []*unstructured.Unstructured, kind, name string, path ...string) []string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(find(t, objs, kind, name).Object, append(path, "containers")...)
	require.NoError(t, err)
	require.NotEmpty(t, containers, "%s %s has a container", kind, name)
	return toStrings(containers[0].(map[string]any)["args"])
}

// repairArgs returns the arguments of the rendered repair CronJob.
func repairArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	return containerArgs(t, objs, "CronJob", repairAccount, "spec", "jobTemplate", "spec", "template", "spec")
}

// repairOptions parses args as the repair command does, and validates them.
func repairOptions(t *testing.T, args []string) repair.Options {
	t.Helper()
	require.NotEmpty(t, args)
	require.Equal(t, "repair", args[0], "the CronJob runs the repair command")
	var o repair.Options
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	require.NoError(t, fs.Parse(args[1:]), "the repair command accepts %q", args)
	require.NoError(t, o.Validate(), "the repair command accepts %q", args)
	return o
}

func TestArgumentsFollowEachInstall(t *testing.T) {
	for name, in := range installs {
		t.Run(name, func(t *testing.T) {
			objs := render(t, in.src)
			args := repairArgs(t, objs)
			assert.Equal(t, in.repairArgs, args)
			repairOptions(t, args)

			hook := webhookOptions(t, objs)
			assert.Equal(t, in.hook, webhookWant{mode: hook.Mode, namespaces: hook.Namespaces,
				archive: hook.Archive, archiveLabelSelector: hook.ArchiveLabelSelector}, "the webhook's arguments")
		})
	}
}

// webhookOptions parses the rendered webhook's arguments as the webhook does, and validates them.
func webhookOptions(t *testing.T, objs []*unstructured.Unstructured) webhook.Options {
	t.Helper()
	var o webhook.Options
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	args := containerArgs(t, objs, "Deployment", webhookAccount, "spec", "template", "spec")
	require.NoError(t, fs.Parse(args), "the webhook accepts %q", args)
	require.NoError(t, o.Validate(), "the webhook accepts %q", args)
	return o
}

// roleRules returns the rules of the rendered Role namespace/name.
func roleRules(t *testing.T, objs []*unstructured.Unstructured, namespace, name string) []rbacv1.PolicyRule {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Role" && o.GetNamespace() == namespace && o.GetName() == name {
			var role rbacv1.Role
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role))
			return role.Rules
		}
	}
	t.Fatalf("no Role %s/%s in the rendered manifests", namespace, name)
	return nil
}

func TestScopedInstallsGrantOnlyInTheNamespacesTheyWatch(t *testing.T) {
	// Each scoped rendering, and the unscoped one whose ClusterRoles its Roles must equal.
	for _, c := range []struct{ scoped, base source }{
		{kustomize("deploy/overlays/scoped"), kustomize("deploy")},
		{chart("ci/scoped-values.yaml"), chart()},
		{chart("namespaces={" + scopedNamespace + ",team-a}"), chart()},
	} {
		t.Run(c.scoped.name, func(t *testing.T) {
			objs, base := render(t, c.scoped), render(t, c.base)
			scope := webhookOptions(t, objs).Namespaces
			require.NotEmpty(t, scope, "the scoped webhook caches pods from given namespaces")
			assert.ElementsMatch(t, scope, repairOptions(t, repairArgs(t, objs)).Namespaces, "the repair scans the namespaces the webhook watches")

			for _, account := range []string{webhookAccount, repairAccount} {
				var bound []string
				for _, o := range objs {
					if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
						continue
					}
					var b rbacv1.RoleBinding // a ClusterRoleBinding has the same fields, bar the namespace
					require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b))
					for _, s := range b.Subjects {
						if s.Kind != rbacv1.ServiceAccountKind || s.Name != account {
							continue
						}
						require.Equal(t, "RoleBinding", o.GetKind(), "%s is bound only per namespace, not by %s %s", account, o.GetKind(), o.GetName())
						assert.Equal(t, "Role", b.RoleRef.Kind, "RoleBinding %s/%s grants a Role, not a ClusterRole", b.Namespace, b.Name)
						assert.Equal(t, clusterRoleRules(t, base, b.RoleRef.Name), roleRules(t, objs, b.Namespace, b.RoleRef.Name),
							"the Role %s/%s grants what the unscoped ClusterRole does", b.Namespace, b.RoleRef.Name)
						bound = append(bound, b.Namespace)
					}
				}
				assert.ElementsMatch(t, scope, bound, "%s is granted exactly in the namespaces the webhook watches", account)
			}
			for _, o := range objs {
				assert.NotEqual(t, "ClusterRole", o.GetKind(), "no cluster-wide role is left to bind: %s", o.GetName())
			}
		})
	}
}

// createStuckTaskResult creates, in namespace, a running Workflow whose Pod node ended in Error
// when its pod was deleted, and that node's task result as argoexec left it (label "false", owned
// by the workflow): the repair's rule A3 completes it once the orphan grace has passed. The
// cleanup deletes both, so that no later scan of every namespace finds them.
func createStuckTaskResult(t *testing.T, namespace, workflow string) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	node := workflow + "-1"
	wf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": workflow, "namespace": namespace,
			"labels": map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: "Running"}},
		"spec": map[string]any{"entrypoint": "main"},
		"status": map[string]any{"phase": "Running", "nodes": map[string]any{node: map[string]any{
			"id": node, "type": "Pod", "phase": "Error", "finishedAt": time.Now().UTC().Format(time.RFC3339)}}},
	}}
	require.NoError(t, admin.Create(ctx, wf))
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": node, "namespace": namespace,
			"labels": map[string]any{rules.LabelWorkflow: workflow, rules.LabelReportOutputsCompleted: "false"},
			"ownerReferences": []any{map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
				"name": workflow, "uid": string(wf.GetUID())}}},
		"outputs": map[string]any{},
	}}
	require.NoError(t, admin.Create(ctx, tr))
	t.Cleanup(func() {
		for _, o := range []client.Object{tr, wf} {
			if err := admin.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				assert.NoError(t, err)
			}
		}
	})
	return tr
}

// afterOrphanGrace is the repair's clock in these tests: past the orphan grace of a node that
// finished now (its pod is gone).
func afterOrphanGrace() time.Time { return time.Now().Add(repair.DefaultOrphanGrace + time.Minute) }

func TestRepairAccessStaysWithinEachInstall(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() {
		// Leave the base installed, as the other tests find it.
		applyRBAC(t, render(t, kustomize("deploy")))
		awaitAccess(t, webhookAccount, everywhere(webhookGrants))
		awaitAccess(t, repairAccount, everywhere(repairGrants))
	})
	for _, ns := range []string{scopedNamespace, outsideNamespace} {
		ensureNamespace(t, ns)
	}
	for name, in := range installs {
		t.Run(name, func(t *testing.T) {
			objs := render(t, in.src)
			applyRBAC(t, objs)
			// Asked of the API server by impersonation, every verb, in and out of scope.
			awaitAccess(t, webhookAccount, in.webhook)
			awaitAccess(t, repairAccount, in.repair)

			results := map[string]*unstructured.Unstructured{}
			for _, ns := range []string{scopedNamespace, outsideNamespace} {
				results[ns] = createStuckTaskResult(t, ns, "wf-install")
			}

			// The CronJob's run, with its arguments, as its account, past the orphan grace.
			opts := repairOptions(t, repairArgs(t, objs))
			var out bytes.Buffer
			opts.RESTConfig, opts.Output, opts.Out, opts.Err = asServiceAccount(repairAccount), "json", &out, &bytes.Buffer{}
			opts.Now = afterOrphanGrace
			opts.ConfirmAfter = 10 * time.Millisecond // nothing changes the facts here; the delay is tested in integration
			_, err := repair.Run(ctx, opts)
			require.NoError(t, err, "the repair runs as its account: %s", out.String())
			var report struct{ Rows []repair.Row }
			require.NoError(t, json.Unmarshal(out.Bytes(), &report))
			verdicts := map[string]string{}
			for _, r := range report.Rows {
				if r.Workflow == "wf-install" {
					verdicts[r.Namespace] = r.Verdict
				}
			}
			assert.Equal(t, in.verdicts, verdicts, "the repair's verdicts on the stuck task results, per namespace")

			sa, err := client.New(asServiceAccount(repairAccount), client.Options{Scheme: harness.Scheme()})
			require.NoError(t, err)
			for ns, tr := range results {
				require.NoError(t, admin.Get(ctx, client.ObjectKeyFromObject(tr), tr))
				want := "false"
				if in.verdicts[ns] == repair.VerdictRepaired {
					want = "true"
				}
				assert.Equal(t, want, tr.GetLabels()[rules.LabelReportOutputsCompleted], "the task result in %s", ns)
				if in.repair.allows(ns, taskResults, "patch") {
					continue
				}
				// Where the account may not patch, even a deliberate patch is refused.
				patch := []byte(`{"metadata":{"labels":{"` + rules.LabelReportOutputsCompleted + `":"true"}}}`)
				err := sa.Patch(ctx, tr.DeepCopy(), client.RawPatch(types.MergePatchType, patch))
				assert.True(t, apierrors.IsForbidden(err), "patching the task result in %s is refused: %v", ns, err)
			}
		})
	}
}
