package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
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
	r := &run{o: o, c: c, pods: map[string]podsRead{}, workflows: map[string]workflowRead{}}
	rows, err := r.scan(ctx)
	if err != nil {
		return Summary{}, err
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

// factsMaxAge bounds how long a workflow's facts (the Workflow and its pods) are reused for its
// task results. A workflow's results are listed together (their names, the node IDs, share the
// workflow's name as prefix), so one read serves them all; the bound keeps a retry or a new
// attempt that happens during a long scan from being decided on facts read before it.
const factsMaxAge = 10 * time.Second

type run struct {
	o         Options
	c         client.Client
	pods      map[string]podsRead     // namespace/workflow → its pods
	workflows map[string]workflowRead // namespace/workflow → its facts
}

// podsRead is a workflow's pods and when they were read (wall clock).
type podsRead struct {
	items []corev1.Pod
	at    time.Time
}

// workflowRead is what rule A3 reads of a Workflow, and when it was read (wall clock).
type workflowRead struct {
	exists, completed, deleting bool
	uid                         string
	status                      webhook.Workflow // phase and nodes; NodesUnreadable says why not
	at                          time.Time
}

// forget drops the cached facts of a workflow, so the next decision reads them afresh.
func (r *run) forget(ns, workflow string) {
	delete(r.pods, ns+"/"+workflow)
	delete(r.workflows, ns+"/"+workflow)
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

// scan lists and decides the task results of each namespace in turn ("" is every namespace).
func (r *run) scan(ctx context.Context) ([]Row, error) {
	sel, err := r.selector()
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, ns := range r.o.namespaces() {
		if rows, err = r.scanNamespace(ctx, sel, ns, rows); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// scanNamespace appends the rows of namespace ns ("" for every namespace), page by page.
func (r *run) scanNamespace(ctx context.Context, sel labels.Selector, ns string, rows []Row) ([]Row, error) {
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
			return nil, explain(what, err)
		}
		for i := range list.Items {
			row, err := r.handle(ctx, &list.Items[i])
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
		scanned += len(list.Items)
		fmt.Fprintf(r.o.Err, "scanned %d task result(s) not complete%s\n", scanned, where)
		if cont = list.GetContinue(); cont == "" {
			return rows, nil
		}
	}
}

// handle decides one task result and, with Apply, patches it. A resourceVersion conflict (a
// concurrent write) re-reads the object and decides again, once.
func (r *run) handle(ctx context.Context, tr *unstructured.Unstructured) (Row, error) {
	for attempt := 0; ; attempt++ {
		row, decision, err := r.decide(ctx, tr)
		if attempt > 0 {
			row.Reason = "re-decided after a concurrent write: " + row.Reason
		}
		if err != nil || !decision.Mutates() || !r.o.Apply {
			return row, err
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"labels":          decision.Set,
			"resourceVersion": tr.GetResourceVersion(), // precondition: never overwrite a concurrent write
		}})
		err = r.c.Patch(ctx, tr, client.RawPatch(types.MergePatchType, patch))
		switch {
		case err == nil:
			row.Verdict = VerdictRepaired
			return row, nil
		case apierrors.IsConflict(err) && attempt == 0:
			r.forget(tr.GetNamespace(), tr.GetLabels()[webhook.LabelWorkflow])
			if err := r.c.Get(ctx, client.ObjectKeyFromObject(tr), tr); err != nil {
				row.Verdict, row.Reason = VerdictError, "re-reading after a concurrent write: "+err.Error()
				return row, nil
			}
			continue
		default:
			row.Verdict, row.Reason = VerdictError, err.Error()
			return row, nil
		}
	}
}

// decide gathers the facts rule A3 reads about one task result (its owner Workflow and that
// workflow's node and pods) and decides it.
func (r *run) decide(ctx context.Context, tr *unstructured.Unstructured) (Row, webhook.Decision, error) {
	ns, wfName := tr.GetNamespace(), tr.GetLabels()[webhook.LabelWorkflow]
	now := r.o.Now()
	row := Row{Namespace: ns, Workflow: wfName, TaskResult: tr.GetName(), WorkflowPhase: "-",
		Age: now.Sub(tr.GetCreationTimestamp().Time).Round(time.Second).String()}
	in := webhook.StuckTaskResult{Name: tr.GetName(), Labels: tr.GetLabels(), Created: tr.GetCreationTimestamp().Time,
		OwnerWorkflowUID: ownerWorkflowUID(tr)}
	var wf webhook.StuckWorkflow
	var pods webhook.NodePods
	if wfName != "" {
		read, err := r.workflow(ctx, ns, wfName)
		if err != nil {
			return row, webhook.Decision{}, err
		}
		wf = read.facts(tr.GetName())
		switch {
		case !read.exists:
			row.WorkflowPhase = "(deleted)"
		case read.status.Phase != "":
			row.WorkflowPhase = read.status.Phase
		}
		all, err := r.podsOf(ctx, ns, wfName)
		if err != nil {
			return row, webhook.Decision{}, err
		}
		for i := range all {
			if all[i].Annotations[webhook.AnnotationNodeID] == tr.GetName() {
				pods.Count++
				pods.Pod = webhook.PodFacts(&all[i])
			}
		}
		if pods.Count > 1 {
			pods.Pod = nil
		}
	}
	d := webhook.DecideStuckTaskResult(in, wf, pods, now, webhook.RepairGrace{Pod: r.o.PodGrace, Orphan: r.o.OrphanGrace})
	row.Reason = d.Reason
	row.Verdict = VerdictSkip
	if d.Mutates() {
		row.Verdict = VerdictRepair
	}
	return row, d, nil
}

// ownerWorkflowUID returns the UID of the task result's Workflow owner reference; "" when none.
func ownerWorkflowUID(tr *unstructured.Unstructured) string {
	for _, o := range tr.GetOwnerReferences() {
		if o.Kind == "Workflow" && strings.HasPrefix(o.APIVersion, "argoproj.io/") {
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
		if t, err := time.Parse(time.RFC3339, n.FinishedAt); err == nil {
			// An unparsable finishedAt counts as unset: the pod-gone branch then waits.
			f.Node.FinishedAt = t
		}
	}
	return f
}

// workflow returns the facts of Workflow ns/name (exists false when it is gone), read at most
// factsMaxAge ago. A status that cannot be read leaves the nodes unreadable, with the reason.
func (r *run) workflow(ctx context.Context, ns, name string) (workflowRead, error) {
	key := ns + "/" + name
	if w, ok := r.workflows[key]; ok && time.Since(w.at) < factsMaxAge {
		return w, nil
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("Workflow")
	w := workflowRead{at: time.Now()}
	err := r.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	switch {
	case apierrors.IsNotFound(err):
		r.workflows[key] = w
		return w, nil
	case err != nil:
		return workflowRead{}, explain("reading Workflow "+key, err)
	}
	w.exists, w.uid = true, string(u.GetUID())
	w.completed = u.GetLabels()[webhook.LabelCompleted] == "true"
	w.deleting = u.GetDeletionTimestamp() != nil
	if raw, err := json.Marshal(u.Object["status"]); err != nil {
		w.status.NodesUnreadable = "status: " + err.Error()
	} else if w.status, err = webhook.ParseWorkflowStatus(raw); err != nil {
		w.status.Nodes, w.status.NodesUnreadable = nil, "status: "+err.Error()
	}
	r.workflows[key] = w
	return w, nil
}

// podsOf returns the pods labelled with workflow ns/wf, read at most factsMaxAge ago.
func (r *run) podsOf(ctx context.Context, ns, wf string) ([]corev1.Pod, error) {
	key := ns + "/" + wf
	if p, ok := r.pods[key]; ok && time.Since(p.at) < factsMaxAge {
		return p.items, nil
	}
	at := time.Now()
	var list corev1.PodList
	if err := r.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{webhook.LabelWorkflow: wf}); err != nil {
		return nil, explain("listing pods of workflow "+key, err)
	}
	r.pods[key] = podsRead{items: list.Items, at: at}
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
