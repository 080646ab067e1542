package repair

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// pageSize bounds each list request (workflows' metadata, pods, task results), so a cluster
// with many is read in pages.
const pageSize = 500

// Verdicts of a row: the diagnosis's (rules.Verdict), and the outcomes of --apply.
const (
	VerdictRepair   = string(rules.VerdictRepair) // safe; flipped or created with Apply, reported without
	VerdictRepaired = "repaired"                  // flipped or created
	VerdictWait     = string(rules.VerdictWait)   // safe once a grace period has passed
	VerdictManual   = string(rules.VerdictManual) // the operator acts (RBAC, a lost pod, an upgrade)
	VerdictSkip     = string(rules.VerdictSkip)   // not safe, or cannot tell
	VerdictOK       = string(rules.VerdictOK)     // nothing holds the node (--workflow only)
	VerdictError    = "error"                     // the write failed
)

// Row is one node of a stuck workflow in the report (or, with Node "", the workflow itself).
type Row struct {
	Namespace     string `json:"namespace"`
	Workflow      string `json:"workflow"`
	WorkflowPhase string `json:"workflowPhase"`
	// Node is the node ID, which is also its task result's name; "" for a row about the workflow.
	Node string `json:"node"`
	// Pod is the pod carrying the node ID ("" for none).
	Pod string `json:"pod"`
	// TaskResult is the task result's state: "true", "false", "no label" or "missing".
	TaskResult string `json:"taskResult"`
	// Cause is the cause of the family (rules.Cause12985, rules.CauseR1 … CauseR11, "?").
	Cause string `json:"cause"`
	// Action is what the repair does: "flip" (the label), "create" (the task result), or "".
	Action   string `json:"action"`
	Verdict  string `json:"verdict"`
	NextStep string `json:"nextStep"`
	Reason   string `json:"reason"`
}

// Summary counts the rows by verdict, overall and per cause.
type Summary struct {
	// Scanned counts the workflows not completed that were listed; Stuck those reported.
	Scanned int `json:"scanned"`
	Stuck   int `json:"stuck"`
	Counts
	// Causes counts the rows of each cause.
	Causes map[string]Counts `json:"causes"`
}

// Counts are rows by verdict.
type Counts struct {
	Rows     int `json:"rows"`
	Repair   int `json:"repair"`
	Repaired int `json:"repaired"`
	Wait     int `json:"wait"`
	Manual   int `json:"manual"`
	Skipped  int `json:"skipped"`
	Errors   int `json:"errors"`
}

// Run scans, diagnoses, optionally repairs, and writes the report. It returns an error when it
// could not complete the scan (the report is then not written) or when any write failed.
//
// With Apply it decides twice. The first pass diagnoses every workflow, and keeps for each node
// found safe only its key and a fingerprint of the facts it was decided on. After ConfirmAfter,
// the confirmation pass re-reads each such workflow, its task results, its pods and its
// executors' rights from the API server (never from the first pass's reads), diagnoses it again,
// and flips or creates only what is still safe with the fingerprint unchanged; a flip carries
// the resourceVersion it was decided on, a creation is a Create (never an Update).
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
	cfg = rest.CopyConfig(cfg)
	// Named apart from the webhook's client in the API server's audit log.
	cfg.UserAgent = "argo-completion-webhook-repair"
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return Summary{}, err
	}
	if err := authorizationv1.AddToScheme(scheme); err != nil {
		return Summary{}, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return Summary{}, fmt.Errorf("connecting to the API server at %s: %w", cfg.Host, err)
	}
	r := &run{o: o, c: c, rights: map[string]rules.ExecutorRights{}}
	var rows []Row
	var candidates []candidate
	var explained *explanation
	if o.Workflow != "" {
		rows, candidates, explained, err = r.explain(ctx)
	} else {
		rows, candidates, err = r.scan(ctx)
	}
	if err != nil {
		return Summary{}, err
	}
	if len(candidates) > 0 {
		if err := r.confirm(ctx, rows, candidates); err != nil {
			return Summary{}, err
		}
	}
	sum := summarize(rows)
	sum.Scanned, sum.Stuck = r.scanned, r.stuck
	if err := write(o, rows, sum, explained); err != nil {
		return sum, err
	}
	if sum.Errors > 0 {
		return sum, fmt.Errorf("%d node(s) could not be repaired", sum.Errors)
	}
	if o.FailOnManual && sum.Manual > 0 {
		return sum, fmt.Errorf("%d stuck node(s) need the operator (see NEXT STEP in the report); failing as --fail-on-manual asks", sum.Manual)
	}
	return sum, nil
}

type run struct {
	o Options
	c client.Client
	// rights are the executor accounts' rights the first pass asked, by namespace/account.
	rights map[string]rules.ExecutorRights
	// scanned and stuck count the workflows not completed listed, and those reported.
	scanned, stuck int
}

// candidate is a node the first pass found safe to repair: its key, the action and the
// fingerprint of the facts it was decided on, nothing more, so memory stays small however many
// there are.
type candidate struct {
	row       int // its index in the rows
	namespace string
	workflow  string
	node      string
	action    string
	facts     fingerprint
}

// explanation is what --workflow says about the workflow as a whole.
type explanation struct {
	Namespace string `json:"namespace"`
	Workflow  string `json:"workflow"`
	Phase     string `json:"phase"`
	Stuck     bool   `json:"stuck"`
	// Shape is how it is stuck; Reason why it is not.
	Shape  string `json:"shape,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// scan is the first pass: it lists and diagnoses the workflows of each namespace in turn (""
// is every namespace), and with Apply returns the nodes found safe as candidates.
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

// selector selects Workflows whose completed label is not "true" (absent or any other value),
// and the user's selector.
func (r *run) selector() (labels.Selector, error) {
	notDone, err := labels.NewRequirement(rules.LabelCompleted, selection.NotEquals, []string{"true"})
	if err != nil {
		return nil, err
	}
	sel := labels.NewSelector().Add(*notDone)
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

// scanNamespace appends the rows and candidates of namespace ns ("" for every namespace). It
// first lists the pods still running (one paged list), then the Workflows not completed as
// metadata only, page by page; a Running workflow with a pod still running is not stuck and is
// not read further. Every other one is read whole, one at a time, diagnosed, and dropped: only
// its rows and candidates' fingerprints stay.
func (r *run) scanNamespace(ctx context.Context, sel labels.Selector, ns string, rows []Row, candidates []candidate) ([]Row, []candidate, error) {
	where := ""
	if ns != "" {
		where = " in namespace " + ns
	}
	busy, err := r.busyWorkflows(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: sel}, client.Limit(pageSize)}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	scanned, stuck, cont := 0, 0, ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(workflowGVK.GroupVersion().WithKind("WorkflowList"))
		if err := r.c.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return nil, nil, explain("listing Workflows"+where, err)
		}
		for i := range list.Items {
			m := &list.Items[i]
			scanned++
			phase := m.Labels[rules.LabelPhase]
			switch {
			case m.DeletionTimestamp != nil, phase == "Pending":
				continue
			case phase != "Succeeded" && phase != "Failed" && phase != "Error" && busy[m.Namespace+"/"+m.Name]:
				continue
			}
			u := newWorkflow(m.Namespace, m.Name)
			if err := r.c.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return nil, nil, explain("reading Workflow "+m.Namespace+"/"+m.Name, err)
			}
			g, d, err := r.gather(ctx, u, false, false)
			if err != nil {
				return nil, nil, err
			}
			if len(d.Findings) > 0 {
				stuck++
			}
			rows, candidates = r.record(g, d, rows, candidates)
		}
		fmt.Fprintf(r.o.Err, "scanned %d workflow(s) not completed%s: %d stuck\n", scanned, where, stuck)
		if cont = list.GetContinue(); cont == "" {
			r.scanned += scanned
			r.stuck += stuck
			return rows, candidates, nil
		}
	}
}

// busyWorkflows lists, page by page, the workflow pods of namespace ns ("" for all) whose phase
// is neither Succeeded nor Failed, and returns the workflows (namespace/name) one of which has
// not finished: those are not stuck. Only their names are kept.
func (r *run) busyWorkflows(ctx context.Context, ns string) (map[string]bool, error) {
	exists, err := labels.NewRequirement(rules.LabelWorkflow, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	running := fields.AndSelectors(fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)))
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: labels.NewSelector().Add(*exists)},
		client.MatchingFieldsSelector{Selector: running}, client.Limit(pageSize)}
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	busy := map[string]bool{}
	cont := ""
	for {
		var list corev1.PodList
		if err := r.c.List(ctx, &list, append(opts, client.Continue(cont))...); err != nil {
			return nil, explain("listing running workflow pods", err)
		}
		for i := range list.Items {
			if p := &list.Items[i]; !familyPod(p).Finished() {
				busy[p.Namespace+"/"+p.Labels[rules.LabelWorkflow]] = true
			}
		}
		if cont = list.Continue; cont == "" {
			return busy, nil
		}
	}
}

// explain is --workflow: the one workflow in full, every Pod node with its pod, its task result,
// the cause and the next step.
func (r *run) explain(ctx context.Context) ([]Row, []candidate, *explanation, error) {
	u := newWorkflow(r.o.Namespace, r.o.Workflow)
	key := r.o.Namespace + "/" + r.o.Workflow
	if err := r.c.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, nil, fmt.Errorf("workflow %s not found", key)
		}
		return nil, nil, nil, explain("reading Workflow "+key, err)
	}
	g, d, err := r.gather(ctx, u, true, false)
	if err != nil {
		return nil, nil, nil, err
	}
	r.scanned = 1
	if d.Stuck {
		r.stuck = 1
	}
	rows, candidates := r.record(g, d, nil, nil)
	wf := g.facts.Workflow
	return rows, candidates, &explanation{Namespace: wf.Namespace, Workflow: wf.Name, Phase: wf.Phase,
		Stuck: d.Stuck, Shape: d.Shape, Reason: d.Reason}, nil
}

// record appends a workflow's findings as rows, and with Apply those found safe as candidates.
func (r *run) record(g *gathered, d rules.Diagnosis, rows []Row, candidates []candidate) ([]Row, []candidate) {
	for _, fd := range d.Findings {
		if fd.Verdict == rules.VerdictRepair && r.o.Apply {
			wf := g.facts.Workflow
			candidates = append(candidates, candidate{row: len(rows), namespace: wf.Namespace, workflow: wf.Name,
				node: fd.Node, action: fd.Action, facts: g.fingerprint(fd.Node)})
		}
		rows = append(rows, rowOf(g.facts.Workflow, fd))
	}
	return rows, candidates
}

// rowOf is a finding's row.
func rowOf(wf rules.FamilyWorkflow, fd rules.Finding) Row {
	row := Row{Namespace: wf.Namespace, Workflow: wf.Name, WorkflowPhase: wf.Phase, Node: fd.Node, Pod: fd.Pod,
		TaskResult: fd.TaskResult, Cause: fd.Cause, Action: fd.Action, Verdict: string(fd.Verdict), NextStep: fd.NextStep, Reason: fd.Reason}
	if fd.Node == "" {
		row.TaskResult = ""
	}
	return row
}

// explain turns API errors into one-line messages that say what to do.
func explain(what string, err error) error {
	var urlErr *url.Error
	switch {
	case apimeta.IsNoMatchError(err):
		return fmt.Errorf("%s: the API server has no argoproj.io/v1alpha1 WorkflowTaskResult or Workflow (is Argo Workflows installed?): %w", what, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: forbidden: the repair needs get/list on workflows, workflowtaskresults and pods, create and patch on workflowtaskresults, and create on localsubjectaccessreviews (deploy/base/repair-cronjob.yaml): %w", what, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: unauthorized: check the kubeconfig's credentials: %w", what, err)
	case errors.As(err, &urlErr):
		return fmt.Errorf("%s: cannot reach the API server: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// act flips or creates node c's task result as fd decided. It returns the API error, if any.
func (r *run) act(ctx context.Context, c candidate, g *gathered, fd rules.Finding) error {
	if c.action == rules.ActionCreate {
		wf := g.facts.Workflow
		tr := newTaskResult(c.namespace, c.node)
		tr.SetLabels(fd.Decision.Set)
		tr.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: workflowGVK.GroupVersion().String(), Kind: workflowGVK.Kind,
			Name: wf.Name, UID: types.UID(wf.UID)}})
		return r.c.Create(ctx, tr)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels":          fd.Decision.Set,
		"resourceVersion": g.results[c.node].resourceVersion, // precondition: never overwrite a concurrent write
	}})
	if err != nil {
		return err
	}
	return r.c.Patch(ctx, newTaskResult(c.namespace, c.node), client.RawPatch(types.MergePatchType, patch))
}

// unreadable is the row of a node whose workflow could not be re-read: a skip when it was
// deleted meanwhile (nothing is left to repair), an error otherwise.
func unreadable(row Row, what string, err error) Row {
	if apierrors.IsNotFound(err) {
		row.Verdict, row.Reason, row.NextStep = VerdictSkip, "deleted meanwhile", "nothing to do"
		return row
	}
	row.Verdict, row.Reason, row.NextStep = VerdictError, what+": "+err.Error(), "run repair again"
	return row
}

func summarize(rows []Row) Summary {
	s := Summary{Causes: map[string]Counts{}}
	for _, r := range rows {
		s.Counts.add(r.Verdict)
		if r.Cause != "" {
			c := s.Causes[r.Cause]
			c.add(r.Verdict)
			s.Causes[r.Cause] = c
		}
	}
	return s
}

func (c *Counts) add(verdict string) {
	c.Rows++
	switch verdict {
	case VerdictRepair:
		c.Repair++
	case VerdictRepaired:
		c.Repaired++
	case VerdictWait:
		c.Wait++
	case VerdictManual:
		c.Manual++
	case VerdictSkip:
		c.Skipped++
	case VerdictError:
		c.Errors++
	}
}

// get reads Workflow ns/name afresh.
func (r *run) getWorkflow(ctx context.Context, ns, name string) (*unstructured.Unstructured, error) {
	u := newWorkflow(ns, name)
	return u, r.c.Get(ctx, client.ObjectKeyFromObject(u), u)
}

// recordEvent tells operators, on the Workflow, what the repair did (kubectl describe workflow,
// the Argo UI): reason TaskResultRepaired or TaskResultCreated, the rule, the cause and the
// node. Written at once, since the command exits; a failure is reported on stderr and changes
// nothing else (the repair itself succeeded).
func (r *run) recordEvent(ctx context.Context, g *gathered, c candidate, fd rules.Finding) {
	wf := g.facts.Workflow
	reason := rules.ReasonTaskResultRepaired
	if c.action == rules.ActionCreate {
		reason = rules.ReasonTaskResultCreated
	}
	now := metav1.NewTime(r.o.Now())
	event := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: wf.Name + ".", Namespace: wf.Namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: workflowGVK.GroupVersion().String(), Kind: workflowGVK.Kind,
			Namespace: wf.Namespace, Name: wf.Name, UID: types.UID(wf.UID)},
		Reason:              reason,
		Message:             fmt.Sprintf("argo-completion-repair (cause %s): %s", fd.Cause, rules.EventMessage(fd.Decision, false, c.node)),
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: "argo-completion-repair"},
		ReportingController: "argo-completion-repair",
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
	if err := r.c.Create(ctx, event); err != nil {
		fmt.Fprintf(r.o.Err, "recording an Event on workflow %s/%s: %v\n", wf.Namespace, wf.Name, err)
	}
}
