package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	case tr.Operation != OperationCreate && tr.Operation != OperationUpdate:
		// DELETE and CONNECT are never mutated.
		return NoDecision(fmt.Sprintf("operation %s is never mutated", tr.Operation)), false
	case tr.Workflow() == "":
		// A0: without the workflow label the controller ignores the result, and so do we.
		return NoDecision("no " + LabelWorkflow + " label"), false
	case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
		// Already complete; never "true" to "false".
		return NoDecision("already complete"), false
	case tr.Outputs == nil:
		// A0: the placeholder create and progress-only patches carry no outputs; more writes follow.
		return NoDecision("no outputs: a placeholder or progress write"), false
	case tr.Operation == OperationUpdate && tr.OldOutputs != nil && jsonEqual(tr.Outputs, tr.OldOutputs):
		// Outputs already stored: this write is not ReportOutputs, the executor's last data write.
		return NoDecision("outputs unchanged"), false
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
		return NoDecision("pod of node " + tr.Name + " not found")
	}
	if tr.WriterPod != "" && tr.WriterPod != pod.Name {
		// A writer may only complete its own node's result.
		return NoDecision(fmt.Sprintf("writer pod %s is not the pod of node %s (%s)", tr.WriterPod, tr.Name, pod.Name))
	}
	if tr.OwnerWorkflowUID != "" && pod.WorkflowUID != "" && tr.OwnerWorkflowUID != pod.WorkflowUID {
		// The pod belongs to another incarnation of the workflow (deleted and re-created).
		return NoDecision("owner workflow UID differs from the pod's")
	}
	set := map[string]string{LabelReportOutputsCompleted: valueTrue}
	if _, present := tr.Labels[LabelReportOutputsCompleted]; !present {
		// A1b: executors v3.5.1 and older never set the label; their outputs write is their last.
		return Decision{Set: set, Rule: "A1b", Reason: "outputs written by an executor that never sets the label"}
	}
	if pod.hasAuxiliary() {
		// A2: the wait/supervisor container calls FinalizeOutput after this write.
		return NoDecision("pod " + pod.Name + " has a wait or supervisor container, which finalizes the result itself")
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
