package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Workflow is what rule B2 reads of a Workflow admission request.
type Workflow struct {
	// Operation is the admission operation; only UPDATE is ever mutated.
	Operation string
	// Username is request.userInfo.username: the writer.
	Username string
	// UID is metadata.uid.
	UID string
	// Labels are the object's labels (nil when it has none).
	Labels map[string]string
	// Finalizers are metadata.finalizers.
	Finalizers []string
	// Phase is status.phase.
	Phase string
	// FinishedAt is status.finishedAt; "" when null or absent.
	FinishedAt string
	// Nodes is status.nodes (or the decoded status.compressedNodes), keyed by node ID. When
	// Summary is set it need hold only the nodes that incomplete entries of
	// TaskResultsCompletion name: rule B2 reads every other node through Summary.
	Nodes map[string]Node
	// Summary is what rule B2 reads of all the nodes, built while a reader streams them (the
	// webhook, which keeps no node it does not need); nil means B2 summarises Nodes itself.
	Summary *NodeSummary
	// NodesUnreadable says why the nodes could not be read (offloaded to a database, corrupt
	// compressedNodes); "" when Nodes is complete.
	NodesUnreadable string
	// TaskResultsCompletion is status.taskResultsCompletionStatus.
	TaskResultsCompletion map[string]bool
}

// Node is what rule B2 reads of one entry of status.nodes.
type Node struct {
	Type             string `json:"type"`
	Phase            string `json:"phase"`
	StartedAt        string `json:"startedAt"`
	FinishedAt       string `json:"finishedAt"`
	Daemoned         bool   `json:"daemoned"`
	TaskResultSynced *bool  `json:"taskResultSynced"`
	// Outputs is the raw JSON of the node's outputs (what the controller has merged from the
	// node's task result); nil when absent or null. It points into the request body: it is read
	// during the decision and never kept.
	Outputs json.RawMessage `json:"outputs"`
}

// WorkflowConfig is the operator's configuration rule B2 depends on.
type WorkflowConfig struct {
	// Disabled turns rule B2 off: every Workflow update is allowed unchanged.
	Disabled bool
	// Grace is how long every Pod node must have finished, and every executor container of an
	// incomplete entry's pod been terminated, before B2 acts, so no executor write can still be
	// on its way.
	Grace time.Duration
	// OrphanGrace is how long ago an incomplete entry's node must have finished when its pod is
	// gone (Argo's TASK_RESULT_TIMEOUT_DURATION, 10m, as repair's A3).
	OrphanGrace time.Duration
	// ControllerUsernames are the users whose updates B2 may act on (the workflow controller's
	// service account); empty means any writer.
	ControllerUsernames []string
	// Archive says the controller archives completed workflows (persistence.archive).
	Archive bool
	// ArchiveSelector is the controller's persistence.archiveLabelSelector; nil matches all.
	ArchiveSelector labels.Selector
}

// PrecheckWorkflowLabels applies rule B2's conditions on the operation, the writer and the labels
// alone, so most Workflow updates are decided without reading status. When it returns false the
// Decision is final.
func PrecheckWorkflowLabels(wf Workflow, cfg WorkflowConfig) (Decision, bool) {
	switch {
	case cfg.Disabled:
		// The operator turned B2 off (--enable-b2=false).
		return NoDecision("rule B2 is turned off"), false
	case wf.Operation != OperationUpdate:
		// B0: never on CREATE (submit, resubmit), DELETE or CONNECT.
		return NoDecision(fmt.Sprintf("operation %s is never mutated", wf.Operation)), false
	case wf.Labels[LabelCompleted] != valueFalse:
		// B0: "true" stays; an absent label (retry removes it) is never re-added.
		return NoDecision("completed label is not \"false\""), false
	case !terminalPhase(wf.Labels[LabelPhase]):
		// B0/B1: Running (the v3.5.5+ shape) is never completed here; fix the task results instead.
		return NoDecision(fmt.Sprintf("phase label %q is not terminal", wf.Labels[LabelPhase])), false
	case len(cfg.ControllerUsernames) > 0 && !slices.Contains(cfg.ControllerUsernames, wf.Username):
		// B0: only the controller's own updates; a user's edit is not the controller's reconcile.
		return NoDecision("writer " + wf.Username + " is not the workflow controller"), false
	}
	return Decision{}, true
}

// PrecheckWorkflow applies rule B2's conditions that need no pod facts. When it returns false the
// Decision is final. When it returns true, the caller looks up the pod of each node ID returned
// (the nodes whose task results are incomplete) and calls DecideWorkflow.
func PrecheckWorkflow(wf Workflow, cfg WorkflowConfig) (Decision, []string, bool) {
	if d, ok := PrecheckWorkflowLabels(wf, cfg); !ok {
		return d, nil, false
	}
	switch {
	case wf.Phase != wf.Labels[LabelPhase]:
		return NoDecision(fmt.Sprintf("status.phase %q differs from the phase label", wf.Phase)), nil, false
	case wf.FinishedAt != "":
		return NoDecision("finishedAt already set"), nil, false
	case wf.NodesUnreadable != "":
		return NoDecision("nodes unreadable: " + wf.NodesUnreadable), nil, false
	case slices.Contains(wf.Finalizers, finalizerArtifactGC):
		// The controller keeps reconciling such a workflow after completion, and a task result
		// still "false" in its informer re-opens the map and blocks artifact GC (and deletion):
		// leave it to the task-result fix (A1/A3), after which the controller completes it.
		return NoDecision("artifact-gc finalizer present: fixed through its task results instead"), nil, false
	}
	if sum := wf.summary(); sum.Blocker != "" {
		return NoDecision(sum.Blocker), nil, false
	}
	var incomplete []string
	for id, done := range wf.TaskResultsCompletion {
		if done {
			continue
		}
		n, ok := wf.Nodes[id]
		switch {
		case !ok:
			return NoDecision("incomplete task result " + id + " has no node"), nil, false
		case n.Type != nodeTypePod || !terminalPhase(n.Phase) || n.FinishedAt == "":
			return NoDecision("incomplete task result " + id + " names a node that is not a finished Pod node"), nil, false
		}
		incomplete = append(incomplete, id)
	}
	if len(incomplete) == 0 {
		// Not the #12985 shape: nothing holds the controller back that B2 would release.
		return NoDecision("no incomplete task result"), nil, false
	}
	slices.Sort(incomplete)
	return Decision{}, incomplete, true
}

// StoredTaskResult is what rule B2 reads of an incomplete entry's WorkflowTaskResult as the API
// server holds it (a quorum read), which may be ahead of what the controller's informer has seen.
type StoredTaskResult struct {
	// Labels are its labels (nil when it has none).
	Labels map[string]string
	// Outputs is the raw JSON of its outputs; nil when absent or null.
	Outputs json.RawMessage
}

// WorkflowFacts are the read-only facts rule B2 decides on besides the request, for the node IDs
// PrecheckWorkflow returns (the incomplete entries).
type WorkflowFacts struct {
	// Now is the time of the decision.
	Now time.Time
	// Pods maps node IDs to their pods; a missing or nil entry means the pod is gone.
	Pods map[string]*Pod
	// TaskResults maps node IDs to their stored task results. A nil entry means the task result
	// does not exist (deleted); a missing entry means it was not read, and B2 declines.
	TaskResults map[string]*StoredTaskResult
	// Listed names every task result of the workflow at the API server; nil means they were
	// not listed, and B2 declines.
	Listed []string
}

// CheckWorkflowPods applies rule B2's conditions on the pods of the incomplete entries: every
// executor container terminated at least cfg.Grace ago, or the pod gone and its node finished at
// least cfg.Grace ago. When it returns false the Decision is final and no task result is read.
func CheckWorkflowPods(wf Workflow, cfg WorkflowConfig, incomplete []string, pods map[string]*Pod, now time.Time) (Decision, bool) {
	// Every Pod node, not only the incomplete ones: a node whose task result the controller has
	// not seen yet has no entry at all, and an executor's first and only write (argoexec
	// v3.5.2–v3.5.4 resource/data, or ≤v3.5.1) may still be in flight when its pod ends. Every
	// Pod node finished the grace ago exactly when the last one to finish did.
	sum := wf.summary()
	if sum.PodWithoutFinishedAt != "" {
		// A finished Pod node always has a finishedAt; without one nothing says when it ended.
		return NoDecision("Pod node " + sum.PodWithoutFinishedAt + " has no valid finishedAt"), false
	}
	if since := now.Sub(sum.LastPodFinished); sum.LastPod != "" && since < cfg.Grace {
		return NoDecision(fmt.Sprintf("node %s finished %s ago, under the %s grace", sum.LastPod, since.Round(time.Second), cfg.Grace)), false
	}
	for _, id := range incomplete {
		p := pods[id]
		if p == nil {
			// The pod is gone: once its bound token is rejected its executors cannot write. The
			// node's finishedAt stands in for the executors' end, with the longer orphan grace
			// (as repair's A3): a legacy token or a partitioned node may outlive the pod object.
			finished, err := time.Parse(time.RFC3339, wf.Nodes[id].FinishedAt)
			if err != nil {
				return NoDecision("node " + id + " finishedAt is not a timestamp"), false
			}
			if since := now.Sub(finished); since < cfg.OrphanGrace {
				return NoDecision(fmt.Sprintf("pod of node %s gone; node finished %s ago, under the %s grace", id, since.Round(time.Second), cfg.OrphanGrace)), false
			}
			continue
		}
		if wf.UID != "" && p.WorkflowUID != "" && p.WorkflowUID != wf.UID {
			// A pod of an earlier workflow of the same name: its times say nothing of this one.
			return NoDecision("pod " + p.Name + " of node " + id + " belongs to another workflow UID"), false
		}
		if p.executorRunning() {
			return NoDecision("pod " + p.Name + " of node " + id + " has an executor container still running"), false
		}
		last, ok := p.executorsEndedAt()
		if !ok {
			return NoDecision("pod " + p.Name + " of node " + id + " reports no termination time for an executor container"), false
		}
		started, err := time.Parse(time.RFC3339, wf.Nodes[id].StartedAt)
		if err != nil {
			// Without it nothing tells this attempt's pod from an earlier one's: decline rather
			// than guess. Argo sets it on every Pod node but one: a retry child re-run by
			// `argo resubmit --memoized` keeps a zero startedAt (B2 then waits for the pod to be
			// gone, and repair's A3 declines it too).
			return NoDecision("node " + id + " has no startedAt: cannot tell its pod is this attempt's"), false
		}
		if last.Before(started) {
			// Ended before this attempt of the node started: an earlier attempt's pod (retry).
			return NoDecision("pod " + p.Name + " ended before node " + id + " started: not this attempt's pod"), false
		}
		if since := now.Sub(last); since < cfg.Grace {
			// An executor's last writes may still be on their way (or the controller's
			// task-result informer may not have them yet); Argo waits for them, so do we.
			return NoDecision(fmt.Sprintf("executors of pod %s terminated %s ago, under the %s grace", p.Name, since.Round(time.Second), cfg.Grace)), false
		}
	}
	return Decision{}, true
}

// DecideWorkflow decides rule B2 (controllers v3.5.3–v3.5.5: phase terminal, completed="false",
// held back only by task results that can no longer change and whose outputs the nodes already
// carry). It is pure: the pods and task results in facts are read by the caller.
//
// Why no write can still land, and nothing is lost, when it acts: every Pod node finished, and
// every executor of every incomplete entry has been terminated, at least cfg.Grace ago (or its
// pod is gone and its node finished that long ago), so no executor write is in flight; every
// task result of the workflow at the API server has an entry in the completion map (the
// controller has seen, and merged, it); and each incomplete entry's task result as the API
// server stores it is not "true" (else the controller completes the workflow itself once its
// informer catches up) and holds no outputs that status.nodes[id].outputs lacks. Completing the
// workflow makes the controller delete the task results in the same reconcile, so these last
// conditions are what keep outputs the controller has not merged yet from being lost.
func DecideWorkflow(wf Workflow, cfg WorkflowConfig, facts WorkflowFacts) Decision {
	d, incomplete, ok := PrecheckWorkflow(wf, cfg)
	if !ok {
		return d
	}
	if d, ok := CheckWorkflowPods(wf, cfg, incomplete, facts.Pods, facts.Now); !ok {
		return d
	}
	return FinishWorkflow(wf, cfg, incomplete, facts)
}

// FinishWorkflow is DecideWorkflow's last stage, for a caller that has already passed
// PrecheckWorkflow (which returned incomplete) and CheckWorkflowPods with the same wf, cfg and
// facts: the task-result conditions, then the patch. The webhook calls the stages in turn so it
// reads the pods and task results only when the earlier stages pass.
func FinishWorkflow(wf Workflow, cfg WorkflowConfig, incomplete []string, facts WorkflowFacts) Decision {
	if facts.Listed == nil {
		return NoDecision("the workflow's task results were not listed")
	}
	for _, name := range facts.Listed {
		if _, seen := wf.TaskResultsCompletion[name]; !seen {
			// The controller has not seen it yet, so has not merged its outputs: completing now
			// would delete it with them.
			return NoDecision("task result " + name + " is not yet seen by the controller")
		}
	}
	for _, id := range incomplete {
		tr, read := facts.TaskResults[id]
		switch {
		case !read:
			return NoDecision("task result " + id + " was not read")
		case tr == nil:
			// Deleted: it holds nothing that could be lost, and no executor will write it again.
			continue
		case tr.Labels[LabelReportOutputsCompleted] == valueTrue:
			// The controller's informer lags the API server; it completes the workflow itself,
			// with the outputs, once it sees this.
			return NoDecision("task result " + id + " is already complete at the API server; the controller will complete the workflow")
		case !outputsCarried(tr.Outputs, wf.Nodes[id].Outputs):
			return NoDecision("task result " + id + " holds outputs that node " + id + " does not carry yet")
		}
	}
	sum := wf.summary()
	finishedAt := sum.FinishedAt
	if sum.BadFinishedAt || finishedAt == "" {
		return NoDecision("no node has a valid finishedAt to derive the workflow's from")
	}
	set := map[string]string{LabelCompleted: valueTrue}
	if cfg.Archive && (cfg.ArchiveSelector == nil || cfg.ArchiveSelector.Matches(labels.Set(wf.Labels))) {
		set[LabelArchivingStatus] = archivePending
	}
	return Decision{
		Set:    set,
		Status: &StatusChange{FinishedAt: finishedAt, CompleteTaskResults: incomplete},
		Rule:   "B2",
		Reason: fmt.Sprintf("phase %s held incomplete only by %d finished task result(s) whose outputs the nodes carry", wf.Phase, len(incomplete)),
	}
}

// outputsCarried reports whether every output a task result holds is on its node. The
// controller merges a task result into its node by copying each field of its outputs
// (taskResultReconciliation: result.Outputs.DeepCopyInto(node.Outputs)), so each key of the
// task result's outputs must have an equal value on the node. null, [] and {} count as absent
// (the controller's encoding omits empty slices and structs); "" does not (result and exitCode
// are pointers, so an empty string is merged and kept). Anything unreadable is not carried.
func outputsCarried(result, node json.RawMessage) bool {
	want, ok := outputFields(result)
	if !ok {
		return false
	}
	if len(want) == 0 {
		return true
	}
	have, ok := outputFields(node)
	if !ok {
		return false
	}
	for k, v := range want {
		if !reflect.DeepEqual(v, have[k]) {
			return false
		}
	}
	return true
}

// outputFields decodes an outputs object, dropping null, [] and {}; nil or null is no fields.
func outputFields(raw json.RawMessage) (map[string]any, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	for k, v := range m {
		switch v := v.(type) {
		case nil:
			delete(m, k)
		case []any:
			if len(v) == 0 {
				delete(m, k)
			}
		case map[string]any:
			if len(v) == 0 {
				delete(m, k)
			}
		}
	}
	return m, true
}

// nodeFulfilled is Argo's NodeStatus.Fulfilled for a non-daemoned node, synced-aware as in
// v3.7.1+: a completed node whose task result is not synced is not fulfilled.
func nodeFulfilled(n Node) bool {
	switch n.Phase {
	case phaseSkipped, phaseOmitted:
		return true
	case phaseSucceeded, phaseFailed, phaseError:
		return n.TaskResultSynced == nil || *n.TaskResultSynced
	}
	return false
}

// NodeSummary is what rule B2 reads of status.nodes as a whole: whether some node keeps it from
// acting, when the last Pod node finished, and the latest finishedAt of any node. It is built one
// node at a time (Add), so a reader can stream the nodes of a large Workflow without keeping
// them; SummarizeNodes builds it from a nodes map. Adding the same nodes in the same order always
// gives the same summary.
type NodeSummary struct {
	// Blocker says why a node keeps B2 from acting (it is daemoned, or not fulfilled), naming
	// the first such node added; "" when none does.
	Blocker string
	// PodWithoutFinishedAt names the first Pod node that ran (not Skipped or Omitted) without a
	// valid finishedAt; "" when there is none.
	PodWithoutFinishedAt string
	// LastPod names the Pod node that ran and finished last, at LastPodFinished; "" when none.
	LastPod         string
	LastPodFinished time.Time
	// FinishedAt is the latest finishedAt of any node, verbatim, so the value B2 writes is
	// derived from the object and identical on every evaluation (of equal instants, the
	// smallest string); "" when no node has one.
	FinishedAt string
	// BadFinishedAt is true when some node's finishedAt is not an RFC 3339 time: B2 then derives
	// no finishedAt at all.
	BadFinishedAt bool
	latest        time.Time
}

// Add folds node id into the summary. id is copied only when the summary keeps it, so a reader
// may pass a slice of its input.
func (s *NodeSummary) Add(id []byte, n Node) {
	if s.Blocker == "" {
		if n.Daemoned {
			s.Blocker = "node " + string(id) + " is daemoned"
		} else if !nodeFulfilled(n) {
			s.Blocker = fmt.Sprintf("node %s is not fulfilled (phase %q)", id, n.Phase)
		}
	}
	finished, err := time.Parse(time.RFC3339, n.FinishedAt)
	if n.FinishedAt != "" {
		switch {
		case err != nil:
			s.BadFinishedAt = true
		case s.FinishedAt == "" || finished.After(s.latest) || (finished.Equal(s.latest) && n.FinishedAt < s.FinishedAt):
			s.latest, s.FinishedAt = finished, n.FinishedAt
		}
	}
	if n.Type != nodeTypePod || n.Phase == phaseSkipped || n.Phase == phaseOmitted {
		return
	}
	switch {
	case err != nil:
		if s.PodWithoutFinishedAt == "" {
			s.PodWithoutFinishedAt = string(id)
		}
	case s.LastPod == "" || finished.After(s.LastPodFinished):
		s.LastPod, s.LastPodFinished = string(id), finished
	}
}

// SummarizeNodes adds every node of nodes to a NodeSummary, in node ID order.
func SummarizeNodes(nodes map[string]Node) NodeSummary {
	var s NodeSummary
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		s.Add([]byte(id), nodes[id])
	}
	return s
}

// summary returns wf.Summary, or the summary of wf.Nodes when no reader built one.
func (wf Workflow) summary() NodeSummary {
	if wf.Summary != nil {
		return *wf.Summary
	}
	return SummarizeNodes(wf.Nodes)
}

// executorsEndedAt returns when the pod's last executor container terminated; false when an
// executor container is not terminated or reports no time.
func (p *Pod) executorsEndedAt() (time.Time, bool) {
	var last time.Time
	for _, c := range p.executorContainers() {
		if !c.Terminated || c.TerminatedAt.IsZero() {
			return time.Time{}, false
		}
		if c.TerminatedAt.After(last) {
			last = c.TerminatedAt
		}
	}
	return last, !last.IsZero()
}
