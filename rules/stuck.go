package rules

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
	// OwnerPodUID is the UID of its Pod owner reference, which executors v3.3.2–v3.5.1 set instead
	// of a Workflow owner; "" when it has none.
	OwnerPodUID string
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
	// StartedAt is the node's startedAt; zero when unset. A retry re-creates the node, so a pod
	// created before it is an earlier attempt's.
	StartedAt time.Time
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
	// UID is that pod's metadata.uid when Count is 1: a task result owned by a Pod (executors
	// v3.3.2–v3.5.1) must be owned by this very pod.
	UID string
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
//   - the result is tied to one incarnation of its workflow: by its Workflow owner reference,
//     whose UID is the Workflow's, or (executors v3.3.2–v3.5.1, rule R1) by its Pod owner
//     reference, whose pod is the one carrying the node ID and is owned by the Workflow. A result
//     without either owner is left alone: nothing ties it to this workflow rather than an earlier
//     one of the same name;
//   - the Workflow exists, is not completed and not being deleted: otherwise nothing waits on the
//     result;
//   - its node exists, is a Pod node and has left Pending, or is Pending with exactly one pod,
//     created since the node started (the v3.5.5+ gate holds a node at its last phase, Pending
//     when its pod ran and ended between two reconciles): after `argo retry` the node ID is
//     reused and the node is removed (then re-created Pending), so a stale "false" result of the
//     failed attempt flipped now would complete the new attempt before its outputs land. The
//     result's own age is never evidence;
//   - at most one pod carries the node ID; and either
//   - (a) that pod's executor containers (main, and wait/supervisor when it has them) have all
//     been terminated for grace.Pod, judged on that pod alone even when it is newer than the
//     result (a retry's attempt), and never while a Failed/Unknown pod has one not terminated
//     (R7); or
//   - (b) no pod carries the node ID, the result is not owned by a Pod (the garbage collector
//     deletes such a result with its pod), and the node finished at least grace.Orphan ago: a
//     deleted pod's token is rejected, so nothing can write.
//
// The rule reads one moment's facts. `argo retry` changes them in two steps (v3.5.4's
// RetryWorkflow deletes the pods, then updates the Workflow), and between the two they read as
// branch (b); the repair command therefore decides twice, a confirmation delay apart, and patches
// only if these facts did not change in between (package repair).
func DecideStuckTaskResult(tr StuckTaskResult, wf StuckWorkflow, pods NodePods, now time.Time, grace RepairGrace) Decision {
	workflow := tr.Labels[LabelWorkflow]
	switch {
	case workflow == "":
		// A0: without the workflow label the controller ignores the result, and so do we.
		return NoDecision("no " + LabelWorkflow + " label")
	case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		// Never "true" to "false"; this is also what makes the rule idempotent.
		return NoDecision("already complete")
	case tr.OwnerWorkflowUID == "" && tr.OwnerPodUID == "":
		return NoDecision("no Workflow or Pod owner reference: cannot tell which workflow it belongs to")
	case !wf.Exists:
		return NoDecision("workflow " + workflow + " not found: nothing waits on this result, and the garbage collector deletes it")
	case tr.OwnerWorkflowUID != "" && wf.UID != tr.OwnerWorkflowUID:
		return NoDecision(fmt.Sprintf("owned by an earlier workflow named %s (owner UID %s, workflow UID %s)", workflow, tr.OwnerWorkflowUID, wf.UID))
	case wf.Completed:
		return NoDecision("workflow " + workflow + " is already completed: nothing waits on this result")
	case wf.Deleting:
		// Argo v3.5.3–v3.5.5 with artifact GC can hang here on a "false" result; an operator who
		// has checked that no executor runs labels it by hand (argo-completion-mechanics.md §6).
		return NoDecision("workflow " + workflow + " is being deleted (if its artifact-gc finalizer hangs on this result, label it by hand)")
	case wf.NodesUnreadable != "":
		return NoDecision("workflow nodes unreadable (" + wf.NodesUnreadable + "): cannot check node " + tr.Name)
	case wf.Node == nil:
		// A retry removes the failed Pod node; the controller re-creates it Pending with the same ID.
		return NoDecision("workflow has no node " + tr.Name + ": not started yet, or reset by a retry whose new attempt has not begun")
	case wf.Node.Type != nodeTypePod:
		return NoDecision(fmt.Sprintf("node %s is of type %q, not a Pod node", tr.Name, wf.Node.Type))
	case wf.Node.Phase == nodePending && !podOfThisAttempt(wf.Node, pods):
		// A Pending node is held there by the v3.5.5+ gate when its pod ran and ended between two
		// reconciles; only such a pod, created since the node started, may decide (branch a).
		return NoDecision("node " + tr.Name + " is Pending and no pod created since it started carries its ID: a retry's new attempt may not have begun")
	case wf.Node.Phase == "":
		// Argo creates nodes Pending; a node without a phase is not one we can reason about.
		return NoDecision("node " + tr.Name + " has no phase")
	case pods.Count > 1:
		return NoDecision(fmt.Sprintf("%d pods carry node ID %s: cannot tell which one writes the result", pods.Count, tr.Name))
	case pods.Count == 1 && pods.Pod == nil:
		return NoDecision("the facts of the pod of node " + tr.Name + " are missing")
	}
	if tr.OwnerPodUID != "" {
		if d, tied := tiedToOwnerPod(tr, wf, pods); !tied {
			return d
		}
	}
	if pods.Pod != nil {
		return decideStuckPod(tr, wf, pods.Pod, now, grace)
	}
	return decideStuckOrphan(tr, wf, now, grace)
}

// tiedToOwnerPod checks a result owned by a Pod (executors v3.3.2–v3.5.1): that pod must be the
// one carrying the node ID, and, when the result has no Workflow owner, be owned by the Workflow,
// its only tie to this incarnation of the workflow. It returns false with the reason otherwise.
func tiedToOwnerPod(tr StuckTaskResult, wf StuckWorkflow, pods NodePods) (Decision, bool) {
	switch {
	case pods.Pod == nil:
		// Branch (b) needs no pod, but a result owned by a Pod lives and dies with it.
		return NoDecision(fmt.Sprintf("owned by pod UID %s, and no pod carries node ID %s: the garbage collector deletes the result with its pod", tr.OwnerPodUID, tr.Name)), false
	case pods.UID != tr.OwnerPodUID:
		return NoDecision(fmt.Sprintf("owned by pod UID %s, but the pod carrying node ID %s is %s (UID %s): another attempt's", tr.OwnerPodUID, tr.Name, pods.Pod.Name, pods.UID)), false
	case tr.OwnerWorkflowUID == "" && pods.Pod.WorkflowUID != wf.UID:
		return NoDecision(fmt.Sprintf("owner pod %s is owned by workflow UID %q, not by workflow %s (UID %s): cannot tie the result to this workflow", pods.Pod.Name, pods.Pod.WorkflowUID, tr.Labels[LabelWorkflow], wf.UID)), false
	}
	return Decision{}, true
}

// podOfThisAttempt reports whether exactly one pod carries the node's ID and it was created at or
// after the node started: the pod of this attempt of the node, not a retried one's.
func podOfThisAttempt(node *StuckNode, pods NodePods) bool {
	return pods.Count == 1 && pods.Pod != nil && !node.StartedAt.IsZero() && !pods.Pod.Created.IsZero() &&
		!pods.Pod.Created.Before(node.StartedAt)
}

// stuckExecutors returns the containers rule A3 waits on: main, wait and supervisor, whichever
// the pod has. Both main and wait run argoexec in a resource template with archiveLogs
// (argo-stuck-family.md §3(a)); elsewhere main terminates before wait, so waiting on it too costs
// nothing. Pod.executorContainers, which the webhook's rules read, stays as it is.
func stuckExecutors(p *Pod) []Container {
	var out []Container
	for _, c := range p.Containers {
		switch c.Name {
		case containerMain, containerWait, containerSuperv:
			out = append(out, c)
		}
	}
	return out
}

// decideStuckPod is A3's branch (a): the node's single pod exists.
func decideStuckPod(tr StuckTaskResult, wf StuckWorkflow, pod *Pod, now time.Time, grace RepairGrace) Decision {
	if pod.WorkflowUID != "" && pod.WorkflowUID != wf.UID {
		return NoDecision("pod " + pod.Name + " belongs to another workflow of the same name (owner UID " + pod.WorkflowUID + ")")
	}
	// Say so when the pod is a newer attempt than the result: its containers alone decide.
	attempt := ""
	if pod.Created.After(tr.Created) {
		attempt = "pod " + pod.Name + " is newer than the result (a retry's attempt); "
	}
	executors := stuckExecutors(pod)
	if len(executors) == 0 {
		return NoDecision(attempt + "pod " + pod.Name + " has no executor container")
	}
	var last time.Time
	for _, c := range executors {
		switch {
		case !c.Terminated && (pod.Phase == podPhaseFailed || pod.Phase == podPhaseUnknown):
			// R7: the node is lost but its executor may still run and write; delete the pod or
			// upgrade Argo (3.6.16, 3.7.7, 4.0.0), then branch (b) applies.
			return NoDecision(fmt.Sprintf("%spod %s is %s but executor container %s has not terminated: it may still write (R7; delete the pod to release it)", attempt, pod.Name, pod.Phase, c.Name))
		case !c.Terminated:
			return NoDecision(attempt + "executor container " + c.Name + " of pod " + pod.Name + " has not terminated")
		case c.TerminatedAt.IsZero():
			return NoDecision(attempt + "executor container " + c.Name + " of pod " + pod.Name + " reports no termination time")
		}
		if c.TerminatedAt.After(last) {
			last = c.TerminatedAt
		}
	}
	since := now.Sub(last)
	if since < grace.Pod {
		d := NoDecision(fmt.Sprintf("%sexecutors of pod %s terminated %s ago, under the %s grace", attempt, pod.Name, since.Round(time.Second), grace.Pod))
		d.Wait = grace.Pod - since
		return d
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
		return NoDecision("pod of node " + tr.Name + " gone, but the node has not finished")
	}
	age := now.Sub(wf.Node.FinishedAt)
	if age < grace.Orphan {
		d := NoDecision(fmt.Sprintf("pod gone; node finished %s ago, under the %s grace", age.Round(time.Second), grace.Orphan))
		d.Wait = grace.Orphan - age
		return d
	}
	return Decision{
		Set:    map[string]string{LabelReportOutputsCompleted: valueTrue},
		Rule:   "A3",
		Reason: fmt.Sprintf("pod gone; node finished %s ago", age.Round(time.Second)),
	}
}
