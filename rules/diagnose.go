package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The causes of the "work done, workflow never completes" family, as argo-stuck-family.md §1
// numbers them. The diagnosis names one per node of a stuck workflow.
const (
	// Cause12985 (argo-workflows#12985): argoexec v3.5.2–v3.5.4 resource and data pods report
	// their outputs with the label "false" and never finalize.
	Cause12985 = "#12985"
	// CauseR1: an executor ≤ v3.5.1 (mixed versions) wrote the result without the label, owned by
	// its Pod; controllers v3.5.2–v3.5.10 count that incomplete.
	CauseR1 = "R1"
	// CauseR2: the executor's service account may not create or patch task results (RBAC).
	CauseR2 = "R2"
	// CauseR3: the wait (or supervisor) container was killed, OOMKilled or crashed before
	// FinalizeOutput.
	CauseR3 = "R3"
	// CauseR4: the pod was deleted, evicted or preempted while the result was still "false".
	CauseR4 = "R4"
	// CauseR5: the executor exited 0 but gave up FinalizeOutput (transient errors, retries spent).
	CauseR5 = "R5"
	// CauseR6: a resource or data pod's main (no wait container) died before its deferred
	// FinalizeOutput.
	CauseR6 = "R6"
	// CauseR7: the pod is Failed or Unknown while an executor container never terminated (a lost
	// node); it may still write.
	CauseR7 = "R7"
	// CauseR8: the result is "true" but the node is held anyway (v3.7.1's outputs-not-yet-set
	// hold): not a label problem.
	CauseR8 = "R8"
	// CauseR9: the result is missing while the completion map or taskResultSynced waits for it.
	CauseR9 = "R9"
	// CauseR10: controllers v3.5.5–v3.5.8 count a node without a completion entry incomplete,
	// and the node has no result.
	CauseR10 = "R10"
	// CauseR11: no task result holds the workflow; node-tree convergence (argo-workflows#15034
	// and kin): report only.
	CauseR11 = "R11"
	// CauseUnclear: a task result is incomplete but its shape fits no cause (several pods carry
	// the node ID, an executor still runs); the reason says what was seen.
	CauseUnclear = "?"
)

// What the repair does about a node.
const (
	// ActionFlip sets report-outputs-completed="true" on the existing task result (rule A3).
	ActionFlip = "flip"
	// ActionCreate creates the missing task result, complete (rule A4).
	ActionCreate = "create"
)

// Verdict says what becomes of a node.
type Verdict string

// The verdicts of a Finding.
const (
	// VerdictRepair: safe now; the repair flips or creates with --apply.
	VerdictRepair Verdict = "repair"
	// VerdictWait: safe once a grace period has passed (Finding.Wait says how long).
	VerdictWait Verdict = "wait"
	// VerdictManual: the operator must act (RBAC, a lost pod, an upgrade); the repair never will.
	VerdictManual Verdict = "manual"
	// VerdictSkip: not safe, or the facts do not allow telling; the reason says why.
	VerdictSkip Verdict = "skip"
	// VerdictOK: nothing holds this node (listed only when one workflow is explained).
	VerdictOK Verdict = "ok"
)

// Argo node types and phases the diagnosis reads besides the Pod type and terminal phases.
const (
	nodeRunning   = "Running"
	nodeSuspend   = "Suspend"
	nodeHTTP      = "HTTP"
	nodePlugin    = "Plugin"
	reasonOOM     = "OOMKilled"
	defaultSA     = "default"
	issueStuck    = "argo-workflows#15034"
	issueStopped  = "argo-workflows#14709"
	nextCheckHand = "no safe action: check by hand (see the reason)"
)

// FamilyWorkflow is what the diagnosis reads of a Workflow.
type FamilyWorkflow struct {
	// Namespace and Name name it; UID is its metadata.uid.
	Namespace, Name, UID string
	// InstanceID is its workflows.argoproj.io/controller-instanceid label; "" when none.
	InstanceID string
	// Completed: labelled workflows.argoproj.io/completed=true. Deleting: it has a
	// deletionTimestamp.
	Completed, Deleting bool
	// Suspended is spec.suspend; Shutdown is spec.shutdown ("Stop", "Terminate"; "" when unset).
	Suspended bool
	Shutdown  string
	// Phase is status.phase.
	Phase string
	// NodesUnreadable says why status.nodes could not be read; "" when Nodes is complete.
	NodesUnreadable string
	// Nodes is status.nodes, keyed by node ID.
	Nodes map[string]Node
	// TaskResultsCompletion is status.taskResultsCompletionStatus (controllers v3.5.3 to v3.7.0,
	// and workflows those started).
	TaskResultsCompletion map[string]bool
}

// FamilyTaskResult is what the diagnosis reads of a WorkflowTaskResult: rule A3's facts and
// whether it carries outputs.
type FamilyTaskResult struct {
	StuckTaskResult
	// HasOutputs is true when its outputs key is present and not null (ReportOutputs ran).
	HasOutputs bool
}

// FamilyPod is what the diagnosis reads of a pod carrying a node ID: rule A3's facts and more.
type FamilyPod struct {
	*Pod
	// UID is its metadata.uid.
	UID string
	// ServiceAccount is spec.serviceAccountName ("" reads as "default").
	ServiceAccount string
	// Exits holds, per terminated container, its exit code and reason.
	Exits map[string]ContainerExit
	// Fallback is true when the pod carries the annotations argoexec v3.5 wrote when RBAC denied
	// it the task result (workflows.argoproj.io/outputs or report-outputs-completed).
	Fallback bool
}

// ContainerExit is how a container terminated.
type ContainerExit struct {
	Code   int32
	Reason string // e.g. "Completed", "Error", "OOMKilled"
}

// ExecutorRights is what an executor's service account may do on workflowtaskresults in the
// workflow's namespace, as a (Local)SubjectAccessReview answered.
type ExecutorRights struct {
	Create, Patch bool
	// Error says why the review could not be made; the rights are then unknown.
	Error string
}

// FamilyFacts is everything the diagnosis of one workflow reads.
type FamilyFacts struct {
	Workflow FamilyWorkflow
	// TaskResults are the workflow's task results, keyed by name (the node ID).
	TaskResults map[string]*FamilyTaskResult
	// Pods are the pods carrying each node ID, keyed by node ID.
	Pods map[string][]*FamilyPod
	// Rights are the executor service accounts' rights, keyed by service account name; an
	// account absent has not been checked (Diagnosis.Unchecked lists the ones wanted).
	Rights map[string]ExecutorRights
	// All lists every Pod node, not only those with a cause (explaining one workflow).
	All bool
}

// Diagnosis is the verdict on one workflow.
type Diagnosis struct {
	// Stuck is true when the workflow has the shape of the family: a terminal phase with
	// completed=false (v3.5.3–v3.5.5), or Running while every pod has finished or is gone.
	Stuck bool
	// Shape describes that shape; Reason says why the workflow is not stuck when it is not.
	Shape, Reason string
	// Findings are the nodes with a cause (every Pod node with FamilyFacts.All), then the
	// workflow itself (Node "") when nothing else explains it (R11).
	Findings []Finding
	// Unchecked lists the executor service accounts whose rights the diagnosis wanted and
	// FamilyFacts.Rights lacked: check them and diagnose again.
	Unchecked []string
	// Lookups lists the node IDs whose task result would be created: look each up by name (one
	// may exist without the workflow label, which the list by label misses) and diagnose again.
	Lookups []string
}

// Finding is the diagnosis of one node (or, with Node "", of the workflow).
type Finding struct {
	// Node is the node ID (the task result's name); Pod the name of the pod carrying it ("" for
	// none); TaskResult its state: "true", "false", "no label" or "missing".
	Node, Pod, TaskResult string
	// ServiceAccount is the pod's executor service account.
	ServiceAccount string
	// Cause is one of the Cause constants; "" when nothing holds the node.
	Cause string
	// Action is ActionFlip or ActionCreate when the verdict is repair or wait; "" otherwise.
	Action string
	// Decision is rule A3's (flip) or A4's (create): it mutates when the verdict is repair.
	Decision Decision
	Verdict  Verdict
	// Wait is how long until a grace period has passed, with the verdict wait.
	Wait time.Duration
	// NextStep says, in words, what happens next or what the operator does.
	NextStep string
	// Reason says what was seen and why the verdict.
	Reason string
}

// DiagnoseWorkflow finds whether a workflow is stuck for good and, for each of its Pod nodes,
// which cause of the family holds it and what is safe to do (argo-stuck-family.md §1 and §3).
// It is pure: the repair command gathers the facts and acts on the findings.
//
// A workflow is stuck when it is not completed and either has a terminal phase with
// completed=false (controllers v3.5.3–v3.5.5), or is Running with at least one Pod node while
// every pod of its Pod nodes has finished (its phase is Succeeded/Failed/Unknown, or all its
// executor containers terminated) or is gone; a Pending Pod node without a pod, a Running
// Suspend/HTTP/Plugin node or spec.suspend means it still waits on something. Only then are
// repairs offered (explaining a workflow that is not stuck shows its nodes, and holds them at
// wait): a node whose pod ended while another branch still runs is repaired once the workflow
// settles.
//
// Per node: a task result "true" with the node held while its pod Succeeded is R8; one not
// "true" is flipped by rule A3 (#12985, R1, R3, R4, R5, R6); a missing one that the completion
// map or taskResultSynced waits for is created by rule A4 (R9, R10, and R2 once the account may
// write), never while the executor's account may not create and patch task results (R2: fix
// RBAC first) nor while a Failed/Unknown pod's executor has not terminated (R7). When no node
// explains a stuck workflow, once every pod has been finished for grace.Pod, the workflow
// itself is R11: not a task-result problem, report only.
func DiagnoseWorkflow(f FamilyFacts, now time.Time, grace RepairGrace) Diagnosis {
	wf := f.Workflow
	stuck, shape, why := workflowShape(f)
	d := Diagnosis{Stuck: stuck, Shape: shape, Reason: why}
	switch {
	case wf.Completed || wf.Deleting:
		return d
	case wf.NodesUnreadable != "":
		if stuck {
			d.Findings = []Finding{{Cause: CauseUnclear, Verdict: VerdictSkip, NextStep: nextCheckHand,
				Reason: "workflow nodes unreadable (" + wf.NodesUnreadable + "): no node can be checked"}}
		}
		return d
	case !stuck && !f.All:
		return d
	}
	ids := sortedNodeIDs(wf.Nodes)
	for _, id := range ids {
		n := wf.Nodes[id]
		if n.Type != nodeTypePod {
			continue
		}
		fd := diagnoseNode(f, &d, id, n, now, grace)
		if !stuck && fd.Action != "" {
			// Nothing is repaired before the whole workflow has settled.
			fd.Decision, fd.Wait, fd.Verdict = Decision{}, 0, VerdictWait
			fd.NextStep = "will repair once every pod of the workflow has finished"
			fd.Reason = "workflow not stuck yet (" + why + "); " + fd.Reason
		}
		if fd.Cause != "" || f.All {
			d.Findings = append(d.Findings, fd)
		}
	}
	if !stuck {
		return d
	}
	together(&d, wf)
	for _, fd := range d.Findings {
		if fd.Cause != "" {
			return d
		}
	}
	if quiet := quietSince(f); quiet.IsZero() || now.Sub(quiet) >= grace.Pod {
		d.Findings = append(d.Findings, notTaskResults(f, shape, quiet, now))
	}
	return d
}

// together holds back every repair of a workflow in a terminal phase with completed=false
// (controllers v3.5.3–v3.5.5) unless all its held nodes are repaired in the same run. Such a
// workflow can be retried (`argo retry` on Failed/Error), and a retry reuses node IDs without
// deleting task results or their completion entries: a "true" set on one node while another
// still holds the workflow would survive into the new attempt, whose placeholder upsert keeps
// the label, and complete it before its outputs land. Repaired together, the controller
// completes the workflow and deletes its task results in one reconcile.
func together(d *Diagnosis, wf FamilyWorkflow) {
	if !terminalPhase(wf.Phase) {
		return
	}
	var holding []string
	for _, fd := range d.Findings {
		if fd.Cause != "" && fd.Verdict != VerdictRepair {
			holding = append(holding, fd.Node)
		}
	}
	if len(holding) == 0 {
		return
	}
	for i, fd := range d.Findings {
		if fd.Verdict != VerdictRepair {
			continue
		}
		fd.Decision, fd.Verdict = Decision{}, VerdictSkip
		fd.NextStep = "repaired together with node(s) " + strings.Join(holding, ", ") + " once they can be"
		fd.Reason = "workflow phase " + wf.Phase + " with completed=false can be retried, which would keep a lone \"true\": its nodes are repaired together or not at all; " + fd.Reason
		d.Findings[i] = fd
	}
}

// DecideMissingTaskResult is rule A4: create node nodeID's missing WorkflowTaskResult, complete
// (R9, R10, and R2 once the executor's account may write), when rule A3 would flip a "false"
// result of that node owned by the Workflow: the same safe predicate (argo-stuck-family.md §3),
// so no executor write can still land. One that landed after the creation would merge-patch
// outputs without labels into a result the controller already counts complete, and they would
// be lost with the workflow's task results at completion; hence also the repair's two passes.
//
// The result is created as Argo's executors create it since v3.5.2: named after the node ID,
// labelled with the workflow (and the controller instance ID when the Workflow has one),
// owned by the Workflow; plus report-outputs-completed="true".
func DecideMissingTaskResult(wf FamilyWorkflow, nodeID string, pods NodePods, now time.Time, grace RepairGrace) Decision {
	sw := StuckWorkflow{Exists: true, UID: wf.UID, Completed: wf.Completed, Deleting: wf.Deleting, NodesUnreadable: wf.NodesUnreadable}
	created := time.Time{}
	if n, ok := wf.Nodes[nodeID]; ok {
		sw.Node = stuckNode(n)
		created = sw.Node.StartedAt
	}
	if pods.Pod != nil {
		// The result would have been created by this pod: judged on its own containers.
		created = pods.Pod.Created
	}
	would := StuckTaskResult{Name: nodeID, Created: created, OwnerWorkflowUID: wf.UID,
		Labels: map[string]string{LabelWorkflow: wf.Name, LabelReportOutputsCompleted: valueFalse}}
	d := DecideStuckTaskResult(would, sw, pods, now, grace)
	if !d.Mutates() {
		return d
	}
	set := map[string]string{LabelWorkflow: wf.Name, LabelReportOutputsCompleted: valueTrue}
	if wf.InstanceID != "" {
		set[LabelControllerInstanceID] = wf.InstanceID
	}
	return Decision{Set: set, Rule: "A4", Reason: d.Reason}
}

// StuckWorkflowOf returns what rule A3 reads of the workflow for node nodeID.
func StuckWorkflowOf(wf FamilyWorkflow, nodeID string) StuckWorkflow {
	sw := StuckWorkflow{Exists: true, UID: wf.UID, Completed: wf.Completed, Deleting: wf.Deleting, NodesUnreadable: wf.NodesUnreadable}
	if n, ok := wf.Nodes[nodeID]; ok {
		sw.Node = stuckNode(n)
	}
	return sw
}

// NodePodsOf returns what rule A3 reads of the pods carrying a node ID.
func NodePodsOf(pods []*FamilyPod) NodePods {
	np := NodePods{Count: len(pods)}
	if len(pods) == 1 {
		np.Pod, np.UID = pods[0].Pod, pods[0].UID
	}
	return np
}

// workflowShape says whether the workflow is stuck, in which shape, or why not.
func workflowShape(f FamilyFacts) (stuck bool, shape, why string) {
	wf := f.Workflow
	switch {
	case wf.Completed:
		return false, "", "completed"
	case wf.Deleting:
		return false, "", "being deleted"
	case terminalPhase(wf.Phase):
		return true, wf.Phase + " but completed=false (the v3.5.3–v3.5.5 shape)", ""
	case wf.Phase != nodeRunning:
		return false, "", fmt.Sprintf("phase %q: not running", wf.Phase)
	case wf.Suspended:
		return false, "", "suspended (spec.suspend)"
	}
	running := "Running while every pod has finished (the v3.5.5+ shape)"
	if wf.NodesUnreadable != "" {
		// Only the pods can tell.
		seen := false
		for _, pods := range f.Pods {
			for _, p := range pods {
				if !p.Finished() {
					return false, "", "pod " + p.Name + " is still running"
				}
				seen = true
			}
		}
		if !seen {
			return false, "", "nodes unreadable and no pod"
		}
		return true, running, ""
	}
	podNodes := 0
	for _, id := range sortedNodeIDs(wf.Nodes) {
		n := wf.Nodes[id]
		switch n.Type {
		case nodeSuspend, nodeHTTP, nodePlugin:
			if n.Phase == nodeRunning || n.Phase == nodePending {
				return false, "", fmt.Sprintf("%s node %s is %s: it waits on something other than a pod", n.Type, id, n.Phase)
			}
		case nodeTypePod:
			podNodes++
			pods := f.Pods[id]
			if len(pods) == 0 && n.Phase == nodePending {
				return false, "", "node " + id + " is Pending without a pod: its pod is still to come"
			}
			for _, p := range pods {
				if !p.Finished() {
					return false, "", "pod " + p.Name + " of node " + id + " is still running"
				}
			}
		}
	}
	if podNodes == 0 {
		return false, "", "no Pod node yet"
	}
	return true, running, ""
}

// diagnoseNode names the cause holding Pod node id, if any, and what is safe to do.
func diagnoseNode(f FamilyFacts, d *Diagnosis, id string, n Node, now time.Time, grace RepairGrace) Finding {
	wf := f.Workflow
	tr, pods := f.TaskResults[id], f.Pods[id]
	fd := Finding{Node: id, TaskResult: taskResultState(tr)}
	var pod *FamilyPod
	switch len(pods) {
	case 0:
	case 1:
		pod = pods[0]
		fd.Pod = pod.Name
	default:
		fd.Pod = fmt.Sprintf("(%d pods)", len(pods))
	}

	var cause, why string
	switch {
	case tr != nil && tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		if pod != nil && held(n, pod) && pod.finishedFor(now) >= grace.Pod {
			return manual(fd, CauseR8, fmt.Sprintf("task result \"true\" and pod %s Succeeded, yet node still %s: the v3.7.1 outputs-not-yet-set hold (argo-workflows#14775), not a label problem", pod.Name, n.Phase),
				"upgrade to ≥3.7.2")
		}
		return ok(fd, "task result complete")
	case tr == nil:
		if pod != nil && pod.Name != id {
			if done, found := wf.TaskResultsCompletion[pod.Name]; found && !done {
				return manual(fd, CauseR2, "no task result, and the completion map waits on an entry under the pod name "+pod.Name+
					": the v3.5.5 controller keyed the RBAC fallback by pod name (argo-workflows#12733)", "upgrade the controller to ≥3.5.6")
			}
		}
		done, found := wf.TaskResultsCompletion[id]
		switch {
		case found && !done:
			cause, why = CauseR9, "no task result, and the completion map's entry for the node is false: nothing will ever complete it"
		case n.TaskResultSynced != nil && !*n.TaskResultSynced:
			cause, why = CauseR9, "no task result, and the node's taskResultSynced is false: nothing will ever sync it"
		case !found && n.TaskResultSynced == nil && pod != nil && held(n, pod):
			cause, why = CauseR10, fmt.Sprintf("no task result nor completion entry, and the node is held %s while pod %s Succeeded: controllers v3.5.5–v3.5.8 count a missing entry incomplete (argo-workflows#13332)", n.Phase, pod.Name)
		case pod != nil && held(n, pod) && pod.finishedFor(now) >= grace.Pod:
			return manual(fd, CauseR8, fmt.Sprintf("pod %s Succeeded and no task result is awaited, yet node still %s: not a label problem (argo-workflows#14775)", pod.Name, n.Phase),
				"upgrade to ≥3.7.2")
		default:
			return ok(fd, "no task result, and none is awaited")
		}
		fd.Action = ActionCreate
	default:
		fd.Action = ActionFlip
	}

	// The executor's account: while it may not write task results, every new workflow gets
	// stuck too, so RBAC comes first.
	unchecked := ""
	if pod != nil {
		sa := pod.ServiceAccount
		if sa == "" {
			sa = defaultSA
		}
		fd.ServiceAccount = sa
		r, checked := f.Rights[sa]
		switch {
		case !checked:
			if !slices.Contains(d.Unchecked, sa) {
				d.Unchecked = append(d.Unchecked, sa)
			}
			unchecked = " (RBAC of " + sa + " not checked)"
		case r.Error != "":
			unchecked = " (RBAC of " + sa + " not checked: " + r.Error + ")"
		case !r.Create || !r.Patch:
			return manual(fd, CauseR2, fmt.Sprintf("task result %s; service account %s may not %s workflowtaskresults in namespace %s (argo-workflows#12733, #13496)",
				fd.TaskResult, sa, missingVerbs(r), wf.Namespace), "fix RBAC for "+wf.Namespace+"/"+sa+", then run repair")
		}
	}
	if pod != nil && pod.lost() {
		return manual(fd, CauseR7, fmt.Sprintf("pod %s is %s but an executor container never terminated: the node is lost and its executor may still write (fixed in v3.6.16, v3.7.7, v4.0.0)", pod.Name, pod.Phase),
			"delete pod "+pod.Name+" or upgrade to ≥3.6.16/3.7.7")
	}

	var dec Decision
	if fd.Action == ActionFlip {
		cause, why = incompleteCause(tr, pods, pod)
		dec = DecideStuckTaskResult(tr.StuckTaskResult, StuckWorkflowOf(wf, id), NodePodsOf(pods), now, grace)
	} else {
		if pod != nil && pod.Fallback {
			cause, why = CauseR2, why+"; the pod carries argoexec v3.5's RBAC-fallback annotations, and its account may write task results now"
		}
		dec = DecideMissingTaskResult(wf, id, NodePodsOf(pods), now, grace)
	}
	fd.Cause, fd.Decision, fd.Reason = cause, dec, why+"; "+dec.Reason+unchecked
	switch {
	case dec.Mutates():
		fd.Verdict = VerdictRepair
		fd.NextStep = "repair --apply sets the label"
		if fd.Action == ActionCreate {
			fd.NextStep = "repair --apply creates the task result"
		}
	case dec.Wait > 0:
		fd.Verdict, fd.Wait = VerdictWait, dec.Wait
		fd.NextStep = "will repair after " + dec.Wait.Round(time.Second).String()
	case fd.Action == ActionFlip && tr.OwnerPodUID != "" && len(pods) == 0:
		// The garbage collector deletes a Pod-owned result with its pod; a later run then
		// finds the result missing (R9) and creates it.
		fd.Verdict, fd.Action = VerdictSkip, ""
		fd.NextStep = "none: the garbage collector deletes it with its pod, then repair creates it"
	default:
		fd.Verdict, fd.Action, fd.NextStep = VerdictSkip, "", nextCheckHand
	}
	if fd.Action == ActionCreate && !slices.Contains(d.Lookups, id) {
		d.Lookups = append(d.Lookups, id)
	}
	return fd
}

// incompleteCause names why a task result that exists is not "true".
func incompleteCause(tr *FamilyTaskResult, pods []*FamilyPod, pod *FamilyPod) (string, string) {
	if _, labelled := tr.Labels[LabelReportOutputsCompleted]; !labelled {
		owner := ""
		if tr.OwnerPodUID != "" {
			owner = ", owned by its Pod"
		}
		return CauseR1, "task result without the report-outputs-completed label" + owner +
			": written by an executor ≤ v3.5.1, which controllers v3.5.2–v3.5.10 count incomplete (argo-workflows#12103)"
	}
	switch {
	case len(pods) == 0:
		return CauseR4, "task result \"false\" and no pod carries the node ID: the pod was deleted, evicted or preempted before its executor finalized (argo-workflows#12993)"
	case pod == nil:
		return CauseUnclear, fmt.Sprintf("task result %q and %d pods carry the node ID", tr.Labels[LabelReportOutputsCompleted], len(pods))
	}
	if aux := pod.container(containerWait, containerSuperv); aux != nil {
		exit := pod.Exits[aux.Name]
		switch {
		case !aux.Terminated:
			return CauseUnclear, "task result \"false\" while executor container " + aux.Name + " of pod " + pod.Name + " has not terminated"
		case exit.Code != 0 || exit.Reason == reasonOOM:
			return CauseR3, fmt.Sprintf("task result \"false\"; %s container exited %d (%s) before FinalizeOutput (argo-workflows#13373)", aux.Name, exit.Code, orDash(exit.Reason))
		}
		return CauseR5, "task result \"false\"; " + aux.Name + " exited 0, so its outputs were reported, but FinalizeOutput gave up (argo-workflows#14560)"
	}
	main := pod.container(containerMain)
	switch {
	case main == nil:
		return CauseUnclear, "task result \"false\" and pod " + pod.Name + " has no main container"
	case !main.Terminated:
		return CauseUnclear, "task result \"false\" while main of pod " + pod.Name + " has not terminated"
	case pod.Exits[main.Name].Code != 0:
		return CauseR6, fmt.Sprintf("task result \"false\"; resource/data main exited %d before its deferred FinalizeOutput (argo-workflows#13299, #13937)", pod.Exits[main.Name].Code)
	case tr.HasOutputs:
		return Cause12985, "task result \"false\" with outputs from a resource/data pod without wait container: argoexec v3.5.2–v3.5.4 never finalize it (argo-workflows#12985)"
	}
	return CauseR5, "task result \"false\" without outputs; main exited 0 but FinalizeOutput gave up (argo-workflows#14560)"
}

// notTaskResults is the R11 finding: the workflow is stuck and no task result holds it.
func notTaskResults(f FamilyFacts, shape string, quiet, now time.Time) Finding {
	wf := f.Workflow
	issue := issueStuck
	if wf.Shutdown != "" {
		issue = issueStopped
	}
	since := ""
	if !quiet.IsZero() {
		since = " for " + now.Sub(quiet).Round(time.Second).String()
	}
	var daemons []string
	for _, id := range sortedNodeIDs(wf.Nodes) {
		if n := wf.Nodes[id]; n.Daemoned && !terminalPhase(n.Phase) {
			daemons = append(daemons, id)
		}
	}
	extra := ""
	if len(daemons) > 0 {
		extra = "; daemoned node(s) " + strings.Join(daemons, ", ") + " still hold it"
	}
	if wf.Shutdown != "" {
		extra += "; spec.shutdown is " + wf.Shutdown
	}
	return Finding{Cause: CauseR11, Verdict: VerdictManual, NextStep: "not a task-result problem: see " + issue,
		Reason: shape + since + ", yet every Pod node's task result is complete or not awaited: node-tree convergence, which no label fixes" + extra}
}

func manual(fd Finding, cause, why, next string) Finding {
	fd.Cause, fd.Verdict, fd.Reason, fd.NextStep, fd.Action = cause, VerdictManual, why, next, ""
	return fd
}

func ok(fd Finding, why string) Finding {
	fd.Verdict, fd.Reason, fd.NextStep = VerdictOK, why, "nothing to do"
	return fd
}

// taskResultState is a task result's completion label in words.
func taskResultState(tr *FamilyTaskResult) string {
	if tr == nil {
		return "missing"
	}
	v, labelled := tr.Labels[LabelReportOutputsCompleted]
	if !labelled {
		return "no label"
	}
	return v
}

func missingVerbs(r ExecutorRights) string {
	var out []string
	if !r.Create {
		out = append(out, "create")
	}
	if !r.Patch {
		out = append(out, "patch")
	}
	return strings.Join(out, " or ")
}

// held reports whether the controller holds the node at a non-terminal phase although its pod
// Succeeded: the v3.5.5+ gate.
func held(n Node, p *FamilyPod) bool {
	return (n.Phase == nodeRunning || n.Phase == nodePending) && p.succeeded()
}

// quietSince is the latest moment a Pod node finished or an executor of one of their pods
// terminated; zero when none says.
func quietSince(f FamilyFacts) time.Time {
	var last time.Time
	for id, n := range f.Workflow.Nodes {
		if n.Type != nodeTypePod {
			continue
		}
		if t := parseTime(n.FinishedAt); t.After(last) {
			last = t
		}
		for _, p := range f.Pods[id] {
			if t := p.finishedAt(); t.After(last) {
				last = t
			}
		}
	}
	return last
}

// container returns the first of the pod's containers with one of names; nil when none.
func (p *FamilyPod) container(names ...string) *Container {
	for i := range p.Containers {
		if slices.Contains(names, p.Containers[i].Name) {
			return &p.Containers[i]
		}
	}
	return nil
}

// Finished reports whether the pod ran its course: a terminal or Unknown phase, or every
// executor container terminated. A workflow with a pod not finished is not stuck.
func (p *FamilyPod) Finished() bool {
	switch p.Phase {
	case phaseSucceeded, podPhaseFailed, podPhaseUnknown:
		return true
	}
	executors := stuckExecutors(p.Pod)
	for _, c := range executors {
		if !c.Terminated {
			return false
		}
	}
	return len(executors) > 0
}

// succeeded reports whether the pod Succeeded: its phase says so, or (before the kubelet's
// phase update) every container terminated with exit code 0.
func (p *FamilyPod) succeeded() bool {
	switch p.Phase {
	case phaseSucceeded:
		return true
	case podPhaseFailed, podPhaseUnknown:
		return false
	}
	for _, c := range p.Containers {
		if !c.Terminated || p.Exits[c.Name].Code != 0 {
			return false
		}
	}
	return len(p.Containers) > 0
}

// lost reports R7: a Failed or Unknown pod with an executor container not terminated.
func (p *FamilyPod) lost() bool {
	if p.Phase != podPhaseFailed && p.Phase != podPhaseUnknown {
		return false
	}
	for _, c := range stuckExecutors(p.Pod) {
		if !c.Terminated {
			return true
		}
	}
	return false
}

// finishedAt is when the pod's last executor container terminated; zero when none did.
func (p *FamilyPod) finishedAt() time.Time {
	var last time.Time
	for _, c := range stuckExecutors(p.Pod) {
		if c.Terminated && c.TerminatedAt.After(last) {
			last = c.TerminatedAt
		}
	}
	return last
}

// finishedFor is how long ago the pod's executors finished; a day when it does not say.
func (p *FamilyPod) finishedFor(now time.Time) time.Duration {
	t := p.finishedAt()
	if t.IsZero() {
		return 24 * time.Hour
	}
	return now.Sub(t)
}

// stuckNode returns what rule A3 reads of a node.
func stuckNode(n Node) *StuckNode {
	return &StuckNode{Type: n.Type, Phase: n.Phase, StartedAt: parseTime(n.StartedAt), FinishedAt: parseTime(n.FinishedAt)}
}

// parseTime reads an RFC 3339 timestamp; zero when absent or unparsable (an unparsable
// finishedAt counts as unset: the pod-gone branch then waits).
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func sortedNodeIDs(nodes map[string]Node) []string {
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
