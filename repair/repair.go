package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// pageSize bounds each list request, so a cluster with many task results is read in pages.
const pageSize = 500

// Verdicts of a row.
const (
	VerdictRepair   = "repair"   // safe; patched with Apply, reported without
	VerdictRepaired = "repaired" // patched
	VerdictSkip     = "skip"     // not safe (yet)
	VerdictError    = "error"    // the patch failed
)

// Row is one task result in the report.
type Row struct {
	Namespace     string `json:"namespace"`
	Workflow      string `json:"workflow"`
	TaskResult    string `json:"taskResult"`
	WorkflowPhase string `json:"workflowPhase"`
	Age           string `json:"age"`
	Verdict       string `json:"verdict"`
	Reason        string `json:"reason"`
}

// Summary counts the rows by verdict.
type Summary struct {
	Scanned  int `json:"scanned"`
	Repair   int `json:"repair"`
	Repaired int `json:"repaired"`
	Skipped  int `json:"skipped"`
	Errors   int `json:"errors"`
}

// Run scans, decides, optionally patches, and writes the report. It returns an error when it
// could not complete the scan (the report is then not written) or when any patch failed.
//
// With Apply it decides twice. The first pass lists and decides every task result, and keeps
// for each one found safe only its key and a fingerprint of the facts it was decided on. After
// ConfirmAfter, the confirmation pass re-reads each of them, its Workflow and its pods from the
// API server (never from the first pass's reads), decides again, and patches only if the result
// is still safe and the fingerprint is unchanged; the patch carries the resourceVersion it was
// decided on.
func Run(ctx context.Context, o Options) (Summary, error) {
	o.setDefaults()
	if err := o.Validate(); err != nil {
		return Summary{}, err
	}
	cfg := o.RESTConfig
	if cfg == nil {
		loading := clientcmd.NewDefaultClientConfigLoadingRules()
		loading.ExplicitPath = o.Kubeconfig
		var err error
		if cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, nil).ClientConfig(); err != nil {
			return Summary{}, fmt.Errorf("loading kubeconfig: %w", err)
		}
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return Summary{}, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return Summary{}, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	r := &run{o: o, c: c}
	rows, candidates, err := r.scan(ctx)
	if err != nil {
		return Summary{}, err
	}
	if len(candidates) > 0 {
		if err := r.confirm(ctx, rows, candidates); err != nil {
			return Summary{}, err
		}
	}
	sum := summarize(rows)
	if err := write(o, rows, sum); err != nil {
		return sum, err
	}
	if sum.Errors > 0 {
		return sum, fmt.Errorf("%d task result(s) could not be patched", sum.Errors)
	}
	return sum, nil
}

// factsMaxAge bounds how long the first pass reuses a workflow's facts (the Workflow and its
// pods) for its task results. A workflow's results are listed together (their names, the node
// IDs, share the workflow's name as prefix), so one read serves them all; the bound keeps a
// retry or a new attempt that happens during a long scan from being decided on facts read before
// it. The confirmation pass never reuses facts.
const factsMaxAge = 10 * time.Second

type run struct {
	o Options
	c client.Client
	// pods and workflow are the first pass's facts of the last workflow read: one entry, so a
	// scan of many workflows holds one workflow's objects at a time.
	pods     podsRead
	workflow workflowRead
}

// podsRead is a workflow's pods and when they were read (wall clock).
type podsRead struct {
	key   string // namespace/workflow
	items []corev1.Pod
	at    time.Time
}

// workflowRead is what rule A3 reads of a Workflow, and when it was read (wall clock).
type workflowRead struct {
	key                         string // namespace/workflow
	exists, completed, deleting bool
	uid                         string
	startedAt                   string           // status.startedAt: `argo retry` sets it anew
	status                      webhook.Workflow // phase, finishedAt and nodes; NodesUnreadable says why not
	at                          time.Time
}

// candidate is a task result the first pass found safe to repair: its key and the fingerprint of
// the facts it was decided on, nothing more, so memory stays small however many there are.
type candidate struct {
	row   int // its index in the rows
	key   client.ObjectKey
	facts fingerprint
}

// fingerprint is what must not change between the two passes for a patch to go ahead: whatever
// `argo retry`, a new attempt or a re-created workflow changes, none of it a resourceVersion.
// RetryWorkflow deletes the node's pods (PodUIDs), then removes the node (NodePhase and its
// times; the controller re-creates it Pending with a new startedAt) and resets the Workflow
// (status.startedAt set anew, finishedAt cleared, phase Running). A re-created workflow or task
// result of the same name has a new UID.
type fingerprint struct {
	TaskResultUID      string
	WorkflowUID        string
	WorkflowPhase      string
	WorkflowStartedAt  string
	WorkflowFinishedAt string
	NodePhase          string
	NodeStartedAt      string
	NodeFinishedAt     string
	PodUIDs            string // the UIDs of the pods carrying the node ID, sorted, comma-separated
}

// changes lists, in words, what differs from now; "" when nothing does.
func (f fingerprint) changes(now fingerprint) string {
	var out []string
	add := func(what, was, is string) {
		if was != is {
			out = append(out, fmt.Sprintf("%s %s -> %s", what, orNone(was), orNone(is)))
		}
	}
	add("task result UID", f.TaskResultUID, now.TaskResultUID)
	add("workflow UID", f.WorkflowUID, now.WorkflowUID)
	add("workflow phase", f.WorkflowPhase, now.WorkflowPhase)
	add("workflow startedAt", f.WorkflowStartedAt, now.WorkflowStartedAt)
	add("workflow finishedAt", f.WorkflowFinishedAt, now.WorkflowFinishedAt)
	add("node phase", f.NodePhase, now.NodePhase)
	add("node startedAt", f.NodeStartedAt, now.NodeStartedAt)
	add("node finishedAt", f.NodeFinishedAt, now.NodeFinishedAt)
	add("pods carrying the node ID", f.PodUIDs, now.PodUIDs)
	return strings.Join(out, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// selector selects task results whose label is not "true" (absent or any other value), and the
// user's selector.
func (r *run) selector() (labels.Selector, error) {
	notTrue, err := labels.NewRequirement(webhook.LabelReportOutputsCompleted, selection.NotEquals, []string{"true"})
	if err != nil {
		return nil, err
	}
	sel := labels.NewSelector().Add(*notTrue)
	if r.o.Selector != "" {
		user, err := labels.Parse(r.o.Selector)
		if err != nil {
			return nil, fmt.Errorf("--selector: %w", err)
		}
		reqs, _ := user.Requirements()
		sel = sel.Add(reqs...)
	}
	return sel, nil
}

// scan is the first pass: it lists and decides the task results of each namespace in turn (""
// is every namespace), and with Apply returns those found safe as candidates.
func (r *run) scan(ctx context.Context) ([]Row, []candidate, error) {
	sel, err := r.selector()
	if err != nil {
		return nil, nil, err
	}
	var rows []Row
	var candidates []candidate
	for _, ns := range r.o.namespaces() {
		if rows, candidates, err = r.scanNamespace(ctx, sel, ns, rows, candidates); err != nil {
			return nil, nil, err
		}
	}
	return rows, candidates, nil
}

// scanNamespace appends the rows and candidates of namespace ns ("" for every namespace), page by
// page.
func (r *run) scanNamespace(ctx context.Context, sel labels.Selector, ns string, rows []Row, candidates []candidate) ([]Row, []candidate, error) {
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: sel}, client.Limit(pageSize)}
	what, where := "listing WorkflowTaskResults", ""
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
		what, where = what+" in namespace "+ns, " in namespace "+ns
	}
	scanned, cont := 0, ""
	for {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion("argoproj.io/v1alpha1")
		list.SetKind("WorkflowTaskResultList")
		if err := r.c.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return nil, nil, explain(what, err)
		}
		for i := range list.Items {
			tr := &list.Items[i]
			row, d, facts, err := r.decide(ctx, tr, false)
			if err != nil {
				return nil, nil, err
			}
			if d.Mutates() && r.o.Apply {
				candidates = append(candidates, candidate{row: len(rows), key: client.ObjectKeyFromObject(tr), facts: facts})
			}
			rows = append(rows, row)
		}
		scanned += len(list.Items)
		fmt.Fprintf(r.o.Err, "scanned %d task result(s) not complete%s\n", scanned, where)
		if cont = list.GetContinue(); cont == "" {
			return rows, candidates, nil
		}
	}
}

// confirm is the second pass of an Apply run: after the confirmation delay it decides each
// candidate again on facts read afresh and patches it, replacing its row.
func (r *run) confirm(ctx context.Context, rows []Row, candidates []candidate) error {
	fmt.Fprintf(r.o.Err, "%d task result(s) to repair: waiting %s (--confirm-after) before re-reading each, its workflow and its pods, to patch only what is still safe and unchanged\n",
		len(candidates), r.o.ConfirmAfter)
	if r.o.AfterFirstPass != nil {
		r.o.AfterFirstPass()
	}
	wait := time.NewTimer(r.o.ConfirmAfter)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("waiting to confirm %d task result(s) to repair: %w", len(candidates), ctx.Err())
	case <-wait.C:
	}
	fmt.Fprintf(r.o.Err, "confirming %d task result(s)\n", len(candidates))
	var repaired int
	for _, c := range candidates {
		rows[c.row] = r.confirmOne(ctx, rows[c.row], c)
		if rows[c.row].Verdict == VerdictRepaired {
			repaired++
		}
	}
	fmt.Fprintf(r.o.Err, "confirmed %d task result(s): %d repaired, %d not\n", len(candidates), repaired, len(candidates)-repaired)
	return nil
}

// confirmOne re-reads candidate c's task result, Workflow and pods, decides again, and patches it
// when it is still safe and its fingerprint has not changed, with the resourceVersion it was
// decided on as precondition. A conflict (a concurrent write) re-reads everything and decides
// again, once. first is the row of the first pass, used when the task result cannot be read.
func (r *run) confirmOne(ctx context.Context, first Row, c candidate) Row {
	tr := &unstructured.Unstructured{}
	tr.SetAPIVersion("argoproj.io/v1alpha1")
	tr.SetKind("WorkflowTaskResult")
	if err := r.c.Get(ctx, c.key, tr); err != nil {
		return unreadable(first, "re-reading after the confirmation delay", err)
	}
	for attempt := 0; ; attempt++ {
		row, d, facts, err := r.decide(ctx, tr, true)
		prefix := ""
		if attempt > 0 {
			prefix = "re-decided after a concurrent write: "
		}
		switch changed := c.facts.changes(facts); {
		case err != nil:
			row.Verdict, row.Reason = VerdictError, err.Error()
			return row
		case changed != "":
			row.Verdict, row.Reason = VerdictSkip, prefix+"facts changed during the confirmation delay: "+changed+"; now: "+d.Reason
			return row
		case !d.Mutates():
			row.Verdict, row.Reason = VerdictSkip, prefix+"re-decided after the confirmation delay: "+d.Reason
			return row
		}
		row.Reason = prefix + d.Reason
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"labels":          d.Set,
			"resourceVersion": tr.GetResourceVersion(), // precondition: never overwrite a concurrent write
		}})
		err = r.c.Patch(ctx, tr, client.RawPatch(types.MergePatchType, patch))
		switch {
		case err == nil:
			row.Verdict = VerdictRepaired
			return row
		case apierrors.IsConflict(err) && attempt == 0:
			if err := r.c.Get(ctx, c.key, tr); err != nil {
				return unreadable(row, "re-reading after a concurrent write", err)
			}
			continue
		case apierrors.IsNotFound(err):
			row.Verdict, row.Reason = VerdictSkip, "deleted meanwhile"
			return row
		default:
			row.Verdict, row.Reason = VerdictError, err.Error()
			return row
		}
	}
}

// unreadable is the row of a task result that could not be re-read: a skip when it was deleted
// meanwhile (nothing is left to repair), an error otherwise.
func unreadable(row Row, what string, err error) Row {
	if apierrors.IsNotFound(err) {
		row.Verdict, row.Reason = VerdictSkip, "deleted meanwhile"
		return row
	}
	row.Verdict, row.Reason = VerdictError, what+": "+err.Error()
	return row
}

// decide gathers the facts rule A3 reads about one task result (its owner Workflow and that
// workflow's node and pods) and decides it. fresh reads the Workflow and pods from the API
// server even when the first pass read them moments ago. It returns the fingerprint of the
// facts it decided on.
func (r *run) decide(ctx context.Context, tr *unstructured.Unstructured, fresh bool) (Row, webhook.Decision, fingerprint, error) {
	ns, wfName := tr.GetNamespace(), tr.GetLabels()[webhook.LabelWorkflow]
	now := r.o.Now()
	row := Row{Namespace: ns, Workflow: wfName, TaskResult: tr.GetName(), WorkflowPhase: "-",
		Age: now.Sub(tr.GetCreationTimestamp().Time).Round(time.Second).String()}
	in := webhook.StuckTaskResult{Name: tr.GetName(), Labels: tr.GetLabels(), Created: tr.GetCreationTimestamp().Time,
		OwnerWorkflowUID: ownerUID(tr, "argoproj.io", "Workflow"), OwnerPodUID: ownerUID(tr, corev1.GroupName, "Pod")}
	facts := fingerprint{TaskResultUID: string(tr.GetUID())}
	var wf webhook.StuckWorkflow
	var pods webhook.NodePods
	if wfName != "" {
		read, err := r.readWorkflow(ctx, ns, wfName, fresh)
		if err != nil {
			return row, webhook.Decision{}, facts, err
		}
		wf = read.facts(tr.GetName())
		switch {
		case !read.exists:
			row.WorkflowPhase = "(deleted)"
		case read.status.Phase != "":
			row.WorkflowPhase = read.status.Phase
		}
		facts.WorkflowUID, facts.WorkflowPhase = read.uid, read.status.Phase
		facts.WorkflowStartedAt, facts.WorkflowFinishedAt = read.startedAt, read.status.FinishedAt
		if n, ok := read.status.Nodes[tr.GetName()]; ok {
			facts.NodePhase, facts.NodeStartedAt, facts.NodeFinishedAt = n.Phase, n.StartedAt, n.FinishedAt
		}
		all, err := r.podsOf(ctx, ns, wfName, fresh)
		if err != nil {
			return row, webhook.Decision{}, facts, err
		}
		var uids []string
		for i := range all {
			if all[i].Annotations[webhook.AnnotationNodeID] == tr.GetName() {
				pods.Count++
				pods.Pod, pods.UID = webhook.PodFacts(&all[i]), string(all[i].UID)
				uids = append(uids, string(all[i].UID))
			}
		}
		if pods.Count > 1 {
			pods.Pod, pods.UID = nil, ""
		}
		slices.Sort(uids)
		facts.PodUIDs = strings.Join(uids, ",")
	}
	d := webhook.DecideStuckTaskResult(in, wf, pods, now, webhook.RepairGrace{Pod: r.o.PodGrace, Orphan: r.o.OrphanGrace})
	row.Reason = d.Reason
	row.Verdict = VerdictSkip
	if d.Mutates() {
		row.Verdict = VerdictRepair
	}
	return row, d, facts, nil
}

// ownerUID returns the UID of the task result's owner reference of that API group ("" for the
// core group) and kind; "" when none.
func ownerUID(tr *unstructured.Unstructured, group, kind string) string {
	for _, o := range tr.GetOwnerReferences() {
		if gv, err := schema.ParseGroupVersion(o.APIVersion); err == nil && o.Kind == kind && gv.Group == group {
			return string(o.UID)
		}
	}
	return ""
}

// facts returns what rule A3 reads of the workflow for the task result of node nodeID.
func (w workflowRead) facts(nodeID string) webhook.StuckWorkflow {
	f := webhook.StuckWorkflow{Exists: w.exists, UID: w.uid, Completed: w.completed, Deleting: w.deleting,
		NodesUnreadable: w.status.NodesUnreadable}
	if n, ok := w.status.Nodes[nodeID]; ok {
		f.Node = &webhook.StuckNode{Type: n.Type, Phase: n.Phase}
		if t, err := time.Parse(time.RFC3339, n.StartedAt); err == nil {
			f.Node.StartedAt = t
		}
		if t, err := time.Parse(time.RFC3339, n.FinishedAt); err == nil {
			// An unparsable finishedAt counts as unset: the pod-gone branch then waits.
			f.Node.FinishedAt = t
		}
	}
	return f
}

// readWorkflow returns the facts of Workflow ns/name (exists false when it is gone): with fresh,
// read now; otherwise possibly the last workflow's facts, read at most factsMaxAge ago. A status
// that cannot be read leaves the nodes unreadable, with the reason.
func (r *run) readWorkflow(ctx context.Context, ns, name string, fresh bool) (workflowRead, error) {
	key := ns + "/" + name
	if w := r.workflow; !fresh && w.key == key && time.Since(w.at) < factsMaxAge {
		return w, nil
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("Workflow")
	w := workflowRead{key: key, at: time.Now()}
	err := r.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	switch {
	case apierrors.IsNotFound(err):
		r.workflow = w
		return w, nil
	case err != nil:
		return workflowRead{}, explain("reading Workflow "+key, err)
	}
	w.exists, w.uid = true, string(u.GetUID())
	w.completed = u.GetLabels()[webhook.LabelCompleted] == "true"
	w.deleting = u.GetDeletionTimestamp() != nil
	w.startedAt, _, _ = unstructured.NestedString(u.Object, "status", "startedAt")
	if raw, err := json.Marshal(u.Object["status"]); err != nil {
		w.status.NodesUnreadable = "status: " + err.Error()
	} else if w.status, err = webhook.ParseWorkflowStatus(raw); err != nil {
		w.status.Nodes, w.status.NodesUnreadable = nil, "status: "+err.Error()
	}
	r.workflow = w
	return w, nil
}

// podsOf returns the pods labelled with workflow ns/wf: with fresh, listed now; otherwise
// possibly the last workflow's pods, listed at most factsMaxAge ago.
func (r *run) podsOf(ctx context.Context, ns, wf string, fresh bool) ([]corev1.Pod, error) {
	key := ns + "/" + wf
	if p := r.pods; !fresh && p.key == key && time.Since(p.at) < factsMaxAge {
		return p.items, nil
	}
	at := time.Now()
	var list corev1.PodList
	if err := r.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{webhook.LabelWorkflow: wf}); err != nil {
		return nil, explain("listing pods of workflow "+key, err)
	}
	r.pods = podsRead{key: key, items: list.Items, at: at}
	return list.Items, nil
}

// explain turns API errors into one-line messages that say what to do.
func explain(what string, err error) error {
	var urlErr *url.Error
	switch {
	case apimeta.IsNoMatchError(err):
		return fmt.Errorf("%s: the API server has no argoproj.io/v1alpha1 WorkflowTaskResult or Workflow (is Argo Workflows installed?): %w", what, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: forbidden: the repair needs get/list on workflows, workflowtaskresults and pods, and patch on workflowtaskresults (deploy/base/repair-cronjob.yaml): %w", what, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: unauthorized: check the kubeconfig's credentials: %w", what, err)
	case errors.As(err, &urlErr):
		return fmt.Errorf("%s: cannot reach the API server: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func summarize(rows []Row) Summary {
	s := Summary{Scanned: len(rows)}
	for _, r := range rows {
		switch r.Verdict {
		case VerdictRepair:
			s.Repair++
		case VerdictRepaired:
			s.Repaired++
		case VerdictSkip:
			s.Skipped++
		case VerdictError:
			s.Errors++
		}
	}
	return s
}
