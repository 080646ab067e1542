package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// TaskResult is what the A rules read of a WorkflowTaskResult admission request.
type TaskResult struct {
	// Operation is the admission operation: CREATE or UPDATE (anything else is never mutated).
	Operation string
	// Name is the task result's name, which is the node ID of its Pod node.
	Name string
	// Labels are the object's labels (nil when it has none).
	Labels map[string]string
	// Outputs is the raw JSON of object.outputs; nil when the key is absent or null.
	Outputs json.RawMessage
	// OldOutputs is the raw JSON of oldObject.outputs; nil when absent, null, or on CREATE.
	OldOutputs json.RawMessage
	// OwnerWorkflowUID is the UID of the Workflow owner reference; "" when there is none.
	OwnerWorkflowUID string
	// WriterPod is userInfo.extra["authentication.kubernetes.io/pod-name"]; "" when the
	// writer's token carries none.
	WriterPod string
}

// Workflow returns the workflow the task result belongs to (its workflow label).
func (tr TaskResult) Workflow() string {
	return tr.Labels[LabelWorkflow]
}

// PrecheckTaskResult applies the A rules' conditions that need no pod facts. When it returns
// false the returned Decision is final and no pod lookup is needed; when it returns true the
// caller looks up the node's pod and calls DecideTaskResult.
func PrecheckTaskResult(tr TaskResult) (Decision, bool) {
	switch {
	case tr.Operation != opCreate && tr.Operation != opUpdate:
		// DELETE and CONNECT are never mutated.
		return noDecision(fmt.Sprintf("operation %s is never mutated", tr.Operation)), false
	case tr.Workflow() == "":
		// A0: without the workflow label the controller ignores the result, and so do we.
		return noDecision("no " + LabelWorkflow + " label"), false
	case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		// Already complete; never "true" to "false".
		return noDecision("already complete"), false
	case tr.Outputs == nil:
		// A0: the placeholder create and progress-only patches carry no outputs; more writes follow.
		return noDecision("no outputs: a placeholder or progress write"), false
	case tr.Operation == opUpdate && tr.OldOutputs != nil && jsonEqual(tr.Outputs, tr.OldOutputs):
		// Outputs already stored: this write is not ReportOutputs, the executor's last data write.
		return noDecision("outputs unchanged"), false
	}
	return Decision{}, true
}

// DecideTaskResult decides rules A0, A1, A1b and A2 for a WorkflowTaskResult write, given the pod
// of its node (nil when no such pod was found). It is pure: the pod is looked up by the caller.
func DecideTaskResult(tr TaskResult, pod *Pod) Decision {
	if d, ok := PrecheckTaskResult(tr); !ok {
		return d
	}
	if pod == nil {
		// A0: without the pod we cannot tell whether an executor will still write.
		return noDecision("pod of node " + tr.Name + " not found")
	}
	if tr.WriterPod != "" && tr.WriterPod != pod.Name {
		// A writer may only complete its own node's result.
		return noDecision(fmt.Sprintf("writer pod %s is not the pod of node %s (%s)", tr.WriterPod, tr.Name, pod.Name))
	}
	if tr.OwnerWorkflowUID != "" && pod.WorkflowUID != "" && tr.OwnerWorkflowUID != pod.WorkflowUID {
		// The pod belongs to another incarnation of the workflow (deleted and re-created).
		return noDecision("owner workflow UID differs from the pod's")
	}
	set := map[string]string{LabelReportOutputsCompleted: valueTrue}
	if _, present := tr.Labels[LabelReportOutputsCompleted]; !present {
		// A1b: executors v3.5.1 and older never set the label; their outputs write is their last.
		return Decision{Set: set, Rule: "A1b", Reason: "outputs written by an executor that never sets the label"}
	}
	if pod.hasAuxiliary() {
		// A2: the wait/supervisor container calls FinalizeOutput after this write.
		return noDecision("pod " + pod.Name + " has a wait or supervisor container, which finalizes the result itself")
	}
	// A1: a resource or data pod's outputs write is the last write its executor makes (#12985).
	return Decision{Set: set, Rule: "A1", Reason: "outputs written by a resource or data pod, which never finalizes (argo-workflows#12985)"}
}

// jsonEqual reports whether two JSON values have the same bytes once insignificant whitespace is
// removed. The API server serializes object and oldObject with the same encoder, so equal values
// have equal compact forms.
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// StuckTaskResult is what rule A3 reads of a WorkflowTaskResult that receives no more writes.
type StuckTaskResult struct {
	// Name is the task result's name (the node ID).
	Name string
	// Labels are its labels.
	Labels map[string]string
	// Created is its creationTimestamp.
	Created time.Time
	// NodeFinishedAt is the workflow node's finishedAt; zero when the workflow has no such node
	// or no such timestamp.
	NodeFinishedAt time.Time
}

// RepairGrace are the grace periods of rule A3.
type RepairGrace struct {
	// Pod is how long every executor container must have been terminated (Argo's
	// RECENTLY_DELETED_POD_DURATION, 2m), so the controller has seen the final outputs.
	Pod time.Duration
	// Orphan is how long ago the node finished (or the task result was created, without a node)
	// when the pod is gone (Argo's TASK_RESULT_TIMEOUT_DURATION, 10m).
	Orphan time.Duration
}

// DecideStuckTaskResult decides rule A3 (repair of a task result already stuck) at time now,
// given the pod of its node (nil when the pod is gone). It never acts while an executor
// container could still write.
func DecideStuckTaskResult(tr StuckTaskResult, pod *Pod, now time.Time, grace RepairGrace) Decision {
	switch {
	case tr.Labels[LabelWorkflow] == "":
		return noDecision("no " + LabelWorkflow + " label")
	case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		return noDecision("already complete")
	}
	set := map[string]string{LabelReportOutputsCompleted: valueTrue}
	if pod != nil {
		executors := pod.executorContainers()
		if len(executors) == 0 {
			return noDecision("pod " + pod.Name + " has no executor container")
		}
		var last time.Time
		for _, c := range executors {
			if !c.Terminated {
				return noDecision("executor container " + c.Name + " of pod " + pod.Name + " has not terminated")
			}
			if c.TerminatedAt.IsZero() {
				return noDecision("executor container " + c.Name + " reports no termination time")
			}
			if c.TerminatedAt.After(last) {
				last = c.TerminatedAt
			}
		}
		if since := now.Sub(last); since < grace.Pod {
			return noDecision(fmt.Sprintf("executors terminated %s ago, under the %s grace", since.Round(time.Second), grace.Pod))
		}
		return Decision{Set: set, Rule: "A3", Reason: fmt.Sprintf("every executor container terminated %s ago", now.Sub(last).Round(time.Second))}
	}
	since, what := tr.NodeFinishedAt, "node finished"
	if since.IsZero() {
		since, what = tr.Created, "task result created"
	}
	if age := now.Sub(since); age < grace.Orphan {
		return noDecision(fmt.Sprintf("pod gone; %s %s ago, under the %s grace", what, age.Round(time.Second), grace.Orphan))
	}
	return Decision{Set: set, Rule: "A3", Reason: fmt.Sprintf("pod gone; %s %s ago", what, now.Sub(since).Round(time.Second))}
}
