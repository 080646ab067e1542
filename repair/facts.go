package repair

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// gathered is one workflow's facts, read from the API server, and what the repair acts with:
// each task result's UID and resourceVersion, and the times the fingerprint compares.
type gathered struct {
	facts rules.FamilyFacts
	// startedAt and finishedAt are the Workflow's status.startedAt and finishedAt: `argo retry`
	// sets the first anew and clears the second.
	startedAt, finishedAt string
	// results maps each task result's name to its UID and resourceVersion.
	results map[string]resultRef
}

type resultRef struct{ uid, resourceVersion string }

// gather reads what the diagnosis of Workflow u needs (its task results, its pods, its executors'
// rights, and by name any task result it would create) and diagnoses it. fresh re-asks the
// rights even when this run asked them before. The clock is read after the task results, so a
// write that lands between that read and a patch is one the patch's precondition refuses.
func (r *run) gather(ctx context.Context, u *unstructured.Unstructured, all, fresh bool) (*gathered, rules.Diagnosis, error) {
	g := &gathered{results: map[string]resultRef{}}
	g.facts.All = all
	g.facts.Workflow, g.startedAt, g.finishedAt = familyWorkflow(u)
	wf := g.facts.Workflow
	key := wf.Namespace + "/" + wf.Name
	var err error
	if g.facts.TaskResults, err = r.taskResultsOf(ctx, wf.Namespace, wf.Name, g.results); err != nil {
		return nil, rules.Diagnosis{}, err
	}
	if g.facts.Pods, err = r.podsOf(ctx, wf.Namespace, wf.Name); err != nil {
		return nil, rules.Diagnosis{}, err
	}
	now := r.o.Now()
	grace := rules.RepairGrace{Pod: r.o.PodGrace, Orphan: r.o.OrphanGrace}
	d := rules.DiagnoseWorkflow(g.facts, now, grace)
	if len(d.Unchecked) > 0 {
		g.facts.Rights = map[string]rules.ExecutorRights{}
		for _, sa := range d.Unchecked {
			g.facts.Rights[sa] = r.rightsOf(ctx, wf.Namespace, sa, fresh)
		}
		d = rules.DiagnoseWorkflow(g.facts, now, grace)
	}
	found := false
	for _, id := range d.Lookups {
		// The list selects on the workflow label; a result of that name without it (which the
		// controller ignores) must not be mistaken for a missing one.
		tr := newTaskResult(wf.Namespace, id)
		switch err := r.c.Get(ctx, client.ObjectKeyFromObject(tr), tr); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, rules.Diagnosis{}, explain("reading WorkflowTaskResult "+wf.Namespace+"/"+id+" of workflow "+key, err)
		default:
			g.facts.TaskResults[id] = familyTaskResult(tr)
			g.results[id] = resultRef{uid: string(tr.GetUID()), resourceVersion: tr.GetResourceVersion()}
			found = true
		}
	}
	if found {
		d = rules.DiagnoseWorkflow(g.facts, now, grace)
	}
	return g, d, nil
}

// familyWorkflow reads what the diagnosis reads of a Workflow, and its startedAt and
// finishedAt. A status that cannot be read leaves the nodes unreadable, with the reason.
func familyWorkflow(u *unstructured.Unstructured) (rules.FamilyWorkflow, string, string) {
	labels := u.GetLabels()
	wf := rules.FamilyWorkflow{Namespace: u.GetNamespace(), Name: u.GetName(), UID: string(u.GetUID()),
		InstanceID: labels[rules.LabelControllerInstanceID], Completed: labels[rules.LabelCompleted] == "true",
		Deleting: u.GetDeletionTimestamp() != nil}
	wf.Suspended, _, _ = unstructured.NestedBool(u.Object, "spec", "suspend")
	wf.Shutdown, _, _ = unstructured.NestedString(u.Object, "spec", "shutdown")
	startedAt, _, _ := unstructured.NestedString(u.Object, "status", "startedAt")
	raw, err := json.Marshal(u.Object["status"])
	if err != nil {
		wf.NodesUnreadable = "status: " + err.Error()
		return wf, startedAt, ""
	}
	st, err := rules.ParseWorkflowStatus(raw)
	if err != nil {
		wf.NodesUnreadable = "status: " + err.Error()
		return wf, startedAt, ""
	}
	wf.Phase, wf.Nodes, wf.NodesUnreadable, wf.TaskResultsCompletion = st.Phase, st.Nodes, st.NodesUnreadable, st.TaskResultsCompletion
	return wf, startedAt, st.FinishedAt
}

// taskResultsOf lists the task results labelled with workflow ns/wf, page by page, keeping
// only what the diagnosis reads and each one's UID and resourceVersion (into refs).
func (r *run) taskResultsOf(ctx context.Context, ns, wf string, refs map[string]resultRef) (map[string]*rules.FamilyTaskResult, error) {
	out := map[string]*rules.FamilyTaskResult{}
	cont := ""
	for {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(taskResultGVK.GroupVersion().WithKind("WorkflowTaskResultList"))
		if err := r.c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf},
			client.Limit(pageSize), client.Continue(cont)); err != nil {
			return nil, explain("listing WorkflowTaskResults of workflow "+ns+"/"+wf, err)
		}
		for i := range list.Items {
			tr := &list.Items[i]
			out[tr.GetName()] = familyTaskResult(tr)
			refs[tr.GetName()] = resultRef{uid: string(tr.GetUID()), resourceVersion: tr.GetResourceVersion()}
		}
		if cont = list.GetContinue(); cont == "" {
			return out, nil
		}
	}
}

// familyTaskResult reads what the diagnosis reads of a task result.
func familyTaskResult(tr *unstructured.Unstructured) *rules.FamilyTaskResult {
	return &rules.FamilyTaskResult{HasOutputs: tr.Object["outputs"] != nil, StuckTaskResult: rules.StuckTaskResult{
		Name: tr.GetName(), Labels: tr.GetLabels(), Created: tr.GetCreationTimestamp().Time,
		OwnerWorkflowUID: ownerUID(tr, "argoproj.io", "Workflow"), OwnerPodUID: ownerUID(tr, corev1.GroupName, "Pod")}}
}

// podsOf lists the pods labelled with workflow ns/wf, page by page, reducing each to what the
// diagnosis reads, keyed by its node-id annotation.
func (r *run) podsOf(ctx context.Context, ns, wf string) (map[string][]*rules.FamilyPod, error) {
	out := map[string][]*rules.FamilyPod{}
	cont := ""
	for {
		var list corev1.PodList
		if err := r.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf},
			client.Limit(pageSize), client.Continue(cont)); err != nil {
			return nil, explain("listing pods of workflow "+ns+"/"+wf, err)
		}
		for i := range list.Items {
			if id := list.Items[i].Annotations[rules.AnnotationNodeID]; id != "" {
				out[id] = append(out[id], familyPod(&list.Items[i]))
			}
		}
		if cont = list.Continue; cont == "" {
			return out, nil
		}
	}
}

// familyPod reads what the diagnosis reads of a pod.
func familyPod(pod *corev1.Pod) *rules.FamilyPod {
	p := &rules.FamilyPod{Pod: rules.PodFacts(pod), UID: string(pod.UID), ServiceAccount: pod.Spec.ServiceAccountName,
		Exits: map[string]rules.ContainerExit{}}
	for _, s := range pod.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			p.Exits[s.Name] = rules.ContainerExit{Code: t.ExitCode, Reason: t.Reason}
		}
	}
	_, outputs := pod.Annotations[rules.AnnotationOutputs]
	_, completed := pod.Annotations[rules.LabelReportOutputsCompleted]
	p.Fallback = outputs || completed
	return p
}

// fingerprint returns the facts about node id that must not change between the two passes.
func (g *gathered) fingerprint(id string) fingerprint {
	wf := g.facts.Workflow
	f := fingerprint{TaskResultUID: g.results[id].uid, WorkflowUID: wf.UID, WorkflowPhase: wf.Phase,
		WorkflowStartedAt: g.startedAt, WorkflowFinishedAt: g.finishedAt}
	if n, ok := wf.Nodes[id]; ok {
		f.NodePhase, f.NodeStartedAt, f.NodeFinishedAt = n.Phase, n.StartedAt, n.FinishedAt
	}
	var uids []string
	for _, p := range g.facts.Pods[id] {
		uids = append(uids, p.UID)
	}
	slices.Sort(uids)
	f.PodUIDs = strings.Join(uids, ",")
	return f
}

// fingerprint is what must not change between the two passes for a repair to go ahead:
// whatever `argo retry`, a new attempt or a re-created workflow changes, none of it a
// resourceVersion. RetryWorkflow deletes the node's pods (PodUIDs), then removes the node
// (NodePhase and its times; the controller re-creates it Pending with a new startedAt) and resets
// the Workflow (status.startedAt set anew, finishedAt cleared, phase Running). A re-created
// workflow or task result of the same name has a new UID; a task result created or deleted
// meanwhile changes TaskResultUID.
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

// The kinds the repair reads and writes.
var (
	taskResultGVK = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "WorkflowTaskResult"}
	workflowGVK   = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Workflow"}
)

func newTaskResult(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(taskResultGVK)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func newWorkflow(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(workflowGVK)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}
