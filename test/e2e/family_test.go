package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// familyCase is one cause of the stuck family as the simulated node produces it with Argo's real
// controller: the workflow, the executor version and the fault, and what each controller version
// does with it.
type familyCase struct {
	cause string // the cause repair must name (rules.Cause12985, CauseR2 …)
	file  string // testdata workflow
	// executor is the argoexec the node plays; "" is the controller's own line (executorOf).
	executor harness.ExecutorBehaviour
	fault    map[string]string // pod annotations selecting the fault
	// refusedSA runs the workflow's pods as harness.RefusedServiceAccount (R2), which is bound
	// to the executor role only once the stuck shape is proven, as an operator fixes RBAC.
	refusedSA bool
	// deleteResult deletes the node's task result once the controller has seen it (R9: a manual
	// deletion, or a Pod-owned result collected with its pod).
	deleteResult bool
	// outputs: the executor stored outputs that the completed workflow's node must carry.
	outputs bool
	phase   string // the workflow's phase once completed
	// on lists the controller versions where the cause occurs (the workflow sticks); heals
	// those where Argo's own fallback completes it (no repair run before it does).
	on, heals []string
}

const (
	v354, v355, v3718, v405 = "v3.5.4", "v3.5.5", "v3.7.18", "v4.0.5"
	// healLabel marks the workflows Argo's own fallback must complete; repair's selector leaves
	// them out, so what completes them is Argo alone.
	healLabel = "e2e.argo-completion-webhook.io/argo-heals"
)

// familyCases follows argo-stuck-family.md §1–2: which versions each cause sticks on, and
// which versions heal it themselves.
var familyCases = []familyCase{
	{cause: rules.Cause12985, file: "resource-outputs.yaml", executor: harness.ExecutorV354, outputs: true, phase: "Succeeded",
		on: []string{v354, v355, v3718, v405}},
	{cause: rules.CauseR1, file: "container.yaml", executor: harness.ExecutorV351, outputs: true, phase: "Succeeded",
		on: []string{v354, v355}, heals: []string{v3718, v405}},
	{cause: rules.CauseR2, file: "container.yaml", fault: map[string]string{harness.RBACRefusedAnnotation: "true"}, refusedSA: true, phase: "Error",
		heals: []string{v355, v3718}},
	{cause: rules.CauseR3, file: "container.yaml", fault: map[string]string{harness.WaitKilledAfterReportAnnotation: "true"}, outputs: true, phase: "Error",
		on: []string{v354, v355}, heals: []string{v3718, v405}},
	// Every controller here creates the pod again for the node after "pod deleted"; that pod
	// writes the result complete. (The stuck shape is proven in the integration suite.)
	{cause: rules.CauseR4, file: "container.yaml", fault: map[string]string{harness.PodDeletedMidRunAnnotation: "true"}, phase: "Succeeded",
		heals: []string{v354, v355, v3718, v405}},
	{cause: rules.CauseR5, file: "container.yaml", fault: map[string]string{harness.WaitDiesAfterReportAnnotation: "true"}, outputs: true, phase: "Succeeded",
		on: []string{v354, v355, v3718, v405}},
	{cause: rules.CauseR6, file: "resource-outputs.yaml", fault: map[string]string{harness.MainKilledBeforeFinalizeAnnotation: "137"}, phase: "Failed",
		on: []string{v355, v405}, heals: []string{v3718}},
	{cause: rules.CauseR9, file: "container.yaml", fault: map[string]string{harness.WaitDiesAfterReportAnnotation: "true"}, deleteResult: true, outputs: true, phase: "Succeeded",
		on: []string{v354, v355, v3718, v405}},
	{cause: rules.CauseR10, file: "resource-no-outputs.yaml", executor: harness.ExecutorV354, phase: "Succeeded",
		on: []string{v355}},
}

// executorOf is the argoexec of the controller's own line.
func executorOf(version string) harness.ExecutorBehaviour {
	switch version {
	case v354:
		return harness.ExecutorV354
	case v355:
		return harness.ExecutorV355
	}
	return harness.ExecutorV37
}

// TestStuckFamilyRepairedOnEveryVersion proves each cause of the family against the real
// controller of every version where it occurs: without the tool the workflow stays stuck (in
// that version's shape) for the whole observation window; repair names the cause; after
// `repair --apply` Argo's own controller completes it and its TTL deletes it, with the outputs
// the executor stored on the node.
func TestStuckFamilyRepairedOnEveryVersion(t *testing.T) {
	table := &summary{}
	for _, version := range e2eVersions {
		t.Run(version, func(t *testing.T) { runFamily(t, version, table) })
	}
	fmt.Printf("\nfamily summary (controller logs in %s):\n%s\n", logDir, table)
	_ = os.WriteFile(filepath.Join(logDir, "family-summary.txt"), []byte(table.String()), 0o644)
}

// familyRun is one workflow of the family run.
type familyRun struct {
	c       familyCase
	name    string
	tracker *tracker
	heals   bool
}

func runFamily(t *testing.T, version string, table *summary) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "family-" + strings.ReplaceAll(version, ".", "-")
	node, _, stop := startArgo(t, ctx, version, ns)
	defer stop()
	node.Executor = executorOf(version)
	require.NoError(t, harness.Unregister(ctx, admin))
	require.NoError(t, admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: harness.RefusedServiceAccount, Namespace: ns}}))

	var runs []*familyRun
	for _, c := range familyCases {
		heals := slices.Contains(c.heals, version)
		if !slices.Contains(c.on, version) && !heals {
			continue
		}
		mods := []func(*unstructuredWF){}
		for k, v := range c.fault {
			mods = append(mods, withPodAnnotation(k, v))
		}
		if c.executor != "" {
			mods = append(mods, withPodAnnotation(harness.ExecutorAnnotation, string(c.executor)))
		}
		if heals {
			mods = append(mods, func(wf *unstructuredWF) {
				wf.SetLabels(map[string]string{healLabel: "true"})
			})
		}
		if c.refusedSA {
			mods = append(mods, func(wf *unstructuredWF) {
				require.NoError(t, unstructured.SetNestedField(wf.Object, harness.RefusedServiceAccount, "spec", "serviceAccountName"))
			})
		}
		name := submit(t, ns, c.file, mods...)
		runs = append(runs, &familyRun{c: c, name: name, tracker: track(ctx, ns, name), heals: heals})
	}

	// The workflows Argo completes by itself may wait for the controller's next reconcile (the
	// 20-minute resync when nothing else happens): nudged every 5 s in its place.
	go func() {
		for ctx.Err() == nil {
			for _, r := range runs {
				if r.heals && !r.tracker.get().Gone {
					_ = nudge(ctx, ns, r.name)
				}
			}
			time.Sleep(5 * time.Second)
		}
	}()

	// Every workflow's pods finish (or are gone) and the controller has seen them; R9's
	// task results are then deleted.
	for _, r := range runs {
		if r.heals {
			continue // it may complete, and be deleted, meanwhile
		}
		require.Eventuallyf(t, func() bool { return podsFinished(ctx, ns, r.name) }, 2*time.Minute, 200*time.Millisecond, "%s: the pods of %s finished", r.c.cause, r.name)
		if r.c.deleteResult {
			require.Eventuallyf(t, func() bool { return resultAwaited(ctx, ns, r.name) }, time.Minute, 200*time.Millisecond, "%s: the controller saw %s's task result", r.c.cause, r.name)
			deleteTaskResults(t, ctx, ns, r.name)
		}
	}

	// The stuck rows: not completed for the whole window, in the version's shape.
	deadline := time.Now().Add(observeWindow)
	for _, r := range runs {
		if r.heals {
			continue
		}
		s, completed := r.tracker.waitFor(time.Until(deadline), func(s state) bool { return s.Gone || s.Completed == "true" })
		require.Falsef(t, completed, "%s on %s: stuck for %s: %s", r.c.cause, version, observeWindow, s)
		// v3.5.4 moves the phase on whatever the task results; v3.5.5 holds a Succeeded pod's
		// node Running until its task result is complete, but still ends the phase when the
		// nodes it holds on are not Succeeded ones (a failed node, an evicted attempt); v3.7 and
		// v4 hold every node (taskResultSynced).
		want := []string{"Running"}
		switch version {
		case v354:
			want = []string{r.c.phase}
		case v355:
			want = append(want, r.c.phase)
		}
		assert.Containsf(t, want, s.Phase, "%s: %s's stuck shape", r.c.cause, version)
		assert.Equalf(t, "false", s.Completed, "%s: completed=false", r.c.cause)
		table.add(version, "none", r.c.cause+" ("+r.name+")", fmt.Sprintf("stuck %s: phase=%s completed=%s", observeWindow, s.Phase, s.Completed))
	}
	// Past the graces (the simulated pods finished moments ago), repair names each cause.
	later := func() time.Time { return time.Now().Add(repair.DefaultOrphanGrace + time.Second) }
	rows := repairRows(t, ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Selector: "!" + healLabel, Output: "json", Now: later})
	for _, r := range runs {
		if r.heals {
			continue
		}
		causes := rowCauses(rows, r.name)
		require.Equalf(t, []string{r.c.cause}, causes, "repair names %s for %s: %v", r.c.cause, r.name, rows)
		if r.c.refusedSA {
			assert.Equalf(t, "manual", verdictOf(rows, r.name), "%s: fix RBAC first", r.name)
			bindExecutorRole(t, ctx, ns, harness.RefusedServiceAccount)
		}
	}

	// repair --apply, then Argo's controller completes each and its TTL deletes it.
	var out bytes.Buffer
	sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Selector: "!" + healLabel, Apply: true, ConfirmAfter: time.Second, Now: later, Out: &out, Err: &bytes.Buffer{}})
	require.NoError(t, err, out.String())
	stuck := 0
	for _, r := range runs {
		if !r.heals {
			stuck++
		}
	}
	assert.Equal(t, stuck, sum.Repaired, out.String())
	for _, r := range runs {
		if r.heals {
			continue
		}
		outcome := assertCompletedAndDeleted(t, r.tracker, r.c.phase)
		_, reported := node.Ran(r.name)
		want := reportedOutputs(reported)
		if !r.c.outputs {
			want = nil
		}
		s := r.tracker.get()
		assert.Equalf(t, want, s.SeenCompletedOutputs, "%s: the node carries the outputs the executor stored", r.c.cause)
		if r.c.outputs {
			require.NotEmptyf(t, want, "%s: the executor reported outputs", r.c.cause)
			outcome += "; outputs " + strings.Join(s.SeenCompletedOutputs, ",")
		}
		table.add(version, "repair", r.c.cause+" ("+r.name+")", outcome)
	}
	// The heal rows: Argo's own fallback completes them, with no tool involved.
	for _, r := range runs {
		if !r.heals {
			continue
		}
		s, ok := r.tracker.waitFor(3*time.Minute, func(s state) bool { return s.Gone })
		if !assert.Truef(t, ok, "%s on %s: Argo completes it by itself, and its TTL deletes it, within 3m: %s", r.c.cause, version, s) {
			table.add(version, "none", r.c.cause+" ("+r.name+")", "STILL STUCK after 3m: "+s.String())
			continue
		}
		assert.Truef(t, s.SeenCompleted, "%s: completed=true before deletion", r.c.cause)
		assert.Equalf(t, r.c.phase, s.SeenPhase, "%s: phase", r.c.cause)
		table.add(version, "none", r.c.cause+" ("+r.name+")", fmt.Sprintf("not stuck (Argo's own fallback): %s, completed=%v, deleted by TTL", s.SeenPhase, s.SeenCompleted))
	}
}

// repairRows runs repair in report mode with JSON output and returns its rows.
func repairRows(t *testing.T, ctx context.Context, o repair.Options) []repair.Row {
	t.Helper()
	var out bytes.Buffer
	o.Out, o.Err = &out, &bytes.Buffer{}
	_, err := repair.Run(ctx, o)
	require.NoError(t, err, out.String())
	var report struct {
		Rows []repair.Row `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &report), out.String())
	return report.Rows
}

// rowCauses returns the distinct causes of workflow's node rows.
func rowCauses(rows []repair.Row, workflow string) []string {
	var causes []string
	for _, r := range rows {
		if r.Workflow == workflow && r.Node != "" && !slices.Contains(causes, r.Cause) {
			causes = append(causes, r.Cause)
		}
	}
	return causes
}

func verdictOf(rows []repair.Row, workflow string) string {
	for _, r := range rows {
		if r.Workflow == workflow && r.Node != "" {
			return r.Verdict
		}
	}
	return ""
}

// podsFinished reports whether the workflow has had pods and each left is Succeeded or Failed
// (a deleted pod counts as finished once its node is no longer Pending or Running).
func podsFinished(ctx context.Context, ns, wf string) bool {
	var pods corev1.PodList
	if err := admin.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf}); err != nil {
		return false
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return false
		}
	}
	u := getWorkflow(ctx, ns, wf)
	if u == nil {
		return false
	}
	nodes, _, _ := unstructured.NestedMap(u.Object, "status", "nodes")
	seen := false
	for _, n := range nodes {
		n, _ := n.(map[string]any)
		if n["type"] != "Pod" {
			continue
		}
		seen = true
		if len(pods.Items) == 0 && (n["phase"] == "Pending" || n["phase"] == "Running") && n["message"] == nil {
			return false
		}
	}
	return seen
}

// resultAwaited reports whether the controller has recorded each Pod node's task result as
// incomplete: an entry "false" in taskResultsCompletionStatus (v3.5–v3.6) or taskResultSynced
// false on the node (v3.7.1+).
func resultAwaited(ctx context.Context, ns, wf string) bool {
	u := getWorkflow(ctx, ns, wf)
	if u == nil {
		return false
	}
	completion, _, _ := unstructured.NestedMap(u.Object, "status", "taskResultsCompletionStatus")
	nodes, _, _ := unstructured.NestedMap(u.Object, "status", "nodes")
	for id, n := range nodes {
		n, _ := n.(map[string]any)
		if n["type"] != "Pod" {
			continue
		}
		if done, ok := completion[id].(bool); ok && !done {
			continue
		}
		if synced, ok := n["taskResultSynced"].(bool); ok && !synced {
			continue
		}
		return false
	}
	return len(nodes) > 0
}

func getWorkflow(ctx context.Context, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("Workflow")
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return nil
	}
	return u
}

// deleteTaskResults deletes the workflow's task results, as an operator or the garbage
// collector (a Pod-owned result) does.
func deleteTaskResults(t *testing.T, ctx context.Context, ns, wf string) {
	t.Helper()
	list, err := listTaskResults(ctx, ns, wf)
	require.NoError(t, err)
	require.NotEmpty(t, list.Items, "the workflow has task results to delete")
	for i := range list.Items {
		require.NoError(t, client.IgnoreNotFound(admin.Delete(ctx, &list.Items[i])))
	}
}

// bindExecutorRole grants sa the executor role in ns, as an operator fixes RBAC (R2).
func bindExecutorRole(t *testing.T, ctx context.Context, ns, sa string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "argo-executor-" + sa, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "argo-executor"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if err := admin.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
}
