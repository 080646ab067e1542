package webhook

import (
	"fmt"
	"time"
)

// StuckTaskResult is what rule A3 reads of a WorkflowTaskResult that receives no more writes.
type StuckTaskResult struct {
	// Name is the task result's name (the node ID).
	Name string
	// Labels are its labels.
	Labels map[string]string
	// Created is its creationTimestamp.
	Created time.Time
	// OwnerWorkflowUID is the UID of its Workflow owner reference; "" when it has none.
	OwnerWorkflowUID string
}

// StuckWorkflow is what rule A3 reads of the Workflow named by the task result's workflow label.
type StuckWorkflow struct {
	// Exists is false when the Workflow is not found (deleted).
	Exists bool
	// UID is its metadata.uid.
	UID string
	// Completed is true when it is labelled workflows.argoproj.io/completed=true.
	Completed bool
	// Deleting is true when it has a deletionTimestamp.
	Deleting bool
	// NodesUnreadable says why status.nodes could not be read (offloaded, corrupt
	// compressedNodes); "" when they were read.
	NodesUnreadable string
	// Node is status.nodes[<task result name>]; nil when there is no such node.
	Node *StuckNode
}

// StuckNode is what rule A3 reads of the task result's node in status.nodes.
type StuckNode struct {
	// Type is the node type (Pod, Steps, DAG, ...).
	Type string
	// Phase is the node phase (Pending, Running, Succeeded, ...).
	Phase string
	// FinishedAt is the node's finishedAt; zero when unset.
	FinishedAt time.Time
}

// NodePods is what rule A3 reads of the workflow's pods whose node-id annotation is the task
// result's name.
type NodePods struct {
	// Count is how many of them there are.
	Count int
	// Pod is that pod when Count is 1; nil when Count is 0.
	Pod *Pod
}

// RepairGrace are the grace periods of rule A3.
type RepairGrace struct {
	// Pod is how long every executor container must have been terminated (Argo's
	// RECENTLY_DELETED_POD_DURATION, 2m), so the controller has seen the final outputs.
	Pod time.Duration
	// Orphan is how long ago the node must have finished when its pod is gone (Argo's
	// TASK_RESULT_TIMEOUT_DURATION, 10m).
	Orphan time.Duration
}

const (
	// podPhaseFailed and podPhaseUnknown are the pod phases in which a node may be lost while
	// its executor still runs (argo-stuck-family.md, R7).
	podPhaseFailed  = "Failed"
	podPhaseUnknown = "Unknown"
	// nodePending is the phase of a node whose pod has not started; a retry's new attempt
	// begins there.
	nodePending = "Pending"
)

// DecideStuckTaskResult decides rule A3 (repair of a task result already stuck) at time now. It
// sets report-outputs-completed="true" only when no executor write can still land
// (argo-stuck-family.md section 3, the safe-flip predicate):
//
//   - the owner Workflow exists with the task result's owner UID, is not completed and not being
//     deleted: otherwise nothing waits on the result, or it belongs to an earlier workflow of the
//     same name;
//   - its node exists, is a Pod node and has left Pending: after `argo retry` the node ID is
//     reused and the node is removed (then re-created Pending), so a stale "false" result of the
//     failed attempt flipped now would complete the new attempt before its outputs land. The
//     result's own age is never evidence;
//   - at most one pod carries the node ID; and either
//   - (a) that pod's executor containers (wait/supervisor, or main without them) have all been
//     terminated for grace.Pod, judged on that pod alone even when it is newer than the result
//     (a retry's attempt), and never while a Failed/Unknown pod has one not terminated (R7); or
//   - (b) no pod carries the node ID and the node finished at least grace.Orphan ago: a deleted
//     pod's token is rejected, so nothing can write.
//
// A task result without a Workflow owner reference is left alone: argoexec always sets one, so
// such a result was not made by an executor and cannot be tied to one incarnation of the workflow.
func DecideStuckTaskResult(tr StuckTaskResult, wf StuckWorkflow, pods NodePods, now time.Time, grace RepairGrace) Decision {
	workflow := tr.Labels[LabelWorkflow]
	switch {
	case workflow == "":
		// A0: without the workflow label the controller ignores the result, and so do we.
		return noDecision("no " + LabelWorkflow + " label")
	case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		// Never "true" to "false"; this is also what makes the rule idempotent.
		return noDecision("already complete")
	case tr.OwnerWorkflowUID == "":
		return noDecision("no Workflow owner reference (argoexec always sets one): cannot tell which workflow it belongs to")
	case !wf.Exists:
		return noDecision("workflow " + workflow + " not found: nothing waits on this result, and the garbage collector deletes it")
	case wf.UID != tr.OwnerWorkflowUID:
		return noDecision(fmt.Sprintf("owned by an earlier workflow named %s (owner UID %s, workflow UID %s)", workflow, tr.OwnerWorkflowUID, wf.UID))
	case wf.Completed:
		return noDecision("workflow " + workflow + " is already completed: nothing waits on this result")
	case wf.Deleting:
		// Argo v3.5.3–v3.5.5 with artifact GC can hang here on a "false" result; an operator who
		// has checked that no executor runs labels it by hand (argo-completion-mechanics.md §6).
		return noDecision("workflow " + workflow + " is being deleted (if its artifact-gc finalizer hangs on this result, label it by hand)")
	case wf.NodesUnreadable != "":
		return noDecision("workflow nodes unreadable (" + wf.NodesUnreadable + "): cannot check node " + tr.Name)
	case wf.Node == nil:
		// A retry removes the failed Pod node; the controller re-creates it Pending with the same ID.
		return noDecision("workflow has no node " + tr.Name + ": not started yet, or reset by a retry whose new attempt has not begun")
	case wf.Node.Type != nodeTypePod:
		return noDecision(fmt.Sprintf("node %s is of type %q, not a Pod node", tr.Name, wf.Node.Type))
	case wf.Node.Phase == nodePending:
		return noDecision("node " + tr.Name + " is Pending: its pod (perhaps a retry's new attempt) has not started")
	case wf.Node.Phase == "":
		// Argo creates nodes Pending; a node without a phase is not one we can reason about.
		return noDecision("node " + tr.Name + " has no phase")
	case pods.Count > 1:
		return noDecision(fmt.Sprintf("%d pods carry node ID %s: cannot tell which one writes the result", pods.Count, tr.Name))
	case pods.Count == 1 && pods.Pod == nil:
		return noDecision("the facts of the pod of node " + tr.Name + " are missing")
	}
	if pods.Pod != nil {
		return decideStuckPod(tr, wf, pods.Pod, now, grace)
	}
	return decideStuckOrphan(tr, wf, now, grace)
}

// decideStuckPod is A3's branch (a): the node's single pod exists.
func decideStuckPod(tr StuckTaskResult, wf StuckWorkflow, pod *Pod, now time.Time, grace RepairGrace) Decision {
	if pod.WorkflowUID != "" && pod.WorkflowUID != wf.UID {
		return noDecision("pod " + pod.Name + " belongs to another workflow of the same name (owner UID " + pod.WorkflowUID + ")")
	}
	// Say so when the pod is a newer attempt than the result: its containers alone decide.
	attempt := ""
	if pod.Created.After(tr.Created) {
		attempt = "pod " + pod.Name + " is newer than the result (a retry's attempt); "
	}
	executors := pod.executorContainers()
	if len(executors) == 0 {
		return noDecision(attempt + "pod " + pod.Name + " has no executor container")
	}
	var last time.Time
	for _, c := range executors {
		switch {
		case !c.Terminated && (pod.Phase == podPhaseFailed || pod.Phase == podPhaseUnknown):
			// R7: the node is lost but its executor may still run and write; delete the pod or
			// upgrade Argo (3.6.16, 3.7.7, 4.0.0), then branch (b) applies.
			return noDecision(fmt.Sprintf("%spod %s is %s but executor container %s has not terminated: it may still write (R7; delete the pod to release it)", attempt, pod.Name, pod.Phase, c.Name))
		case !c.Terminated:
			return noDecision(attempt + "executor container " + c.Name + " of pod " + pod.Name + " has not terminated")
		case c.TerminatedAt.IsZero():
			return noDecision(attempt + "executor container " + c.Name + " of pod " + pod.Name + " reports no termination time")
		}
		if c.TerminatedAt.After(last) {
			last = c.TerminatedAt
		}
	}
	since := now.Sub(last)
	if since < grace.Pod {
		return noDecision(fmt.Sprintf("%sexecutors of pod %s terminated %s ago, under the %s grace", attempt, pod.Name, since.Round(time.Second), grace.Pod))
	}
	return Decision{
		Set:    map[string]string{LabelReportOutputsCompleted: valueTrue},
		Rule:   "A3",
		Reason: fmt.Sprintf("%severy executor container of pod %s terminated %s ago", attempt, pod.Name, since.Round(time.Second)),
	}
}

// decideStuckOrphan is A3's branch (b): no pod carries the node ID.
func decideStuckOrphan(tr StuckTaskResult, wf StuckWorkflow, now time.Time, grace RepairGrace) Decision {
	if wf.Node.FinishedAt.IsZero() {
		// The controller has not yet seen the pod go (it marks the node Error "pod deleted").
		return noDecision("pod of node " + tr.Name + " gone, but the node has not finished")
	}
	age := now.Sub(wf.Node.FinishedAt)
	if age < grace.Orphan {
		return noDecision(fmt.Sprintf("pod gone; node finished %s ago, under the %s grace", age.Round(time.Second), grace.Orphan))
	}
	return Decision{
		Set:    map[string]string{LabelReportOutputsCompleted: valueTrue},
		Rule:   "A3",
		Reason: fmt.Sprintf("pod gone; node finished %s ago", age.Round(time.Second)),
	}
}
