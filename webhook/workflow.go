package webhook

import (
	"fmt"
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
	// Labels are the object's labels (nil when it has none).
	Labels map[string]string
	// Phase is status.phase.
	Phase string
	// FinishedAt is status.finishedAt; "" when null or absent.
	FinishedAt string
	// Nodes is status.nodes (or the decoded status.compressedNodes), keyed by node ID.
	Nodes map[string]Node
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
	FinishedAt       string `json:"finishedAt"`
	Daemoned         bool   `json:"daemoned"`
	TaskResultSynced *bool  `json:"taskResultSynced"`
}

// WorkflowConfig is the operator's configuration rule B2 depends on.
type WorkflowConfig struct {
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
	case wf.Operation != opUpdate:
		// B0: never on CREATE (submit, resubmit), DELETE or CONNECT.
		return noDecision(fmt.Sprintf("operation %s is never mutated", wf.Operation)), false
	case wf.Labels[LabelCompleted] != valueFalse:
		// B0: "true" stays; an absent label (retry removes it) is never re-added.
		return noDecision("completed label is not \"false\""), false
	case !terminalPhase(wf.Labels[LabelPhase]):
		// B0/B1: Running (the v3.5.5+ shape) is never completed here; fix the task results instead.
		return noDecision(fmt.Sprintf("phase label %q is not terminal", wf.Labels[LabelPhase])), false
	case len(cfg.ControllerUsernames) > 0 && !slices.Contains(cfg.ControllerUsernames, wf.Username):
		// B0: only the controller's own updates; a user's edit is not the controller's reconcile.
		return noDecision("writer " + wf.Username + " is not the workflow controller"), false
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
		return noDecision(fmt.Sprintf("status.phase %q differs from the phase label", wf.Phase)), nil, false
	case wf.FinishedAt != "":
		return noDecision("finishedAt already set"), nil, false
	case wf.NodesUnreadable != "":
		return noDecision("nodes unreadable: " + wf.NodesUnreadable), nil, false
	}
	for id, n := range wf.Nodes {
		if n.Daemoned {
			return noDecision("node " + id + " is daemoned"), nil, false
		}
		if !nodeFulfilled(n) {
			return noDecision(fmt.Sprintf("node %s is not fulfilled (phase %q)", id, n.Phase)), nil, false
		}
	}
	var incomplete []string
	for id, done := range wf.TaskResultsCompletion {
		if done {
			continue
		}
		n, ok := wf.Nodes[id]
		switch {
		case !ok:
			return noDecision("incomplete task result " + id + " has no node"), nil, false
		case n.Type != nodeTypePod || !terminalPhase(n.Phase) || n.FinishedAt == "":
			return noDecision("incomplete task result " + id + " names a node that is not a finished Pod node"), nil, false
		}
		incomplete = append(incomplete, id)
	}
	if len(incomplete) == 0 {
		// Not the #12985 shape: nothing holds the controller back that B2 would release.
		return noDecision("no incomplete task result"), nil, false
	}
	slices.Sort(incomplete)
	return Decision{}, incomplete, true
}

// DecideWorkflow decides rule B2 (controllers v3.5.3–v3.5.5: phase terminal, completed="false",
// held back only by task results that can no longer change). pods maps the node IDs returned by
// PrecheckWorkflow to their pods; a missing or nil entry means the pod is gone.
func DecideWorkflow(wf Workflow, cfg WorkflowConfig, pods map[string]*Pod) Decision {
	d, incomplete, ok := PrecheckWorkflow(wf, cfg)
	if !ok {
		return d
	}
	for _, id := range incomplete {
		if p := pods[id]; p != nil && p.executorRunning() {
			return noDecision("pod " + p.Name + " of node " + id + " has an executor container still running")
		}
	}
	finishedAt, ok := latestFinishedAt(wf.Nodes)
	if !ok {
		return noDecision("no node has a valid finishedAt to derive the workflow's from")
	}
	set := map[string]string{LabelCompleted: valueTrue}
	if cfg.Archive && (cfg.ArchiveSelector == nil || cfg.ArchiveSelector.Matches(labels.Set(wf.Labels))) {
		set[LabelArchivingStatus] = archivePending
	}
	return Decision{
		Set:    set,
		Status: &StatusChange{FinishedAt: finishedAt, CompleteTaskResults: incomplete},
		Rule:   "B2",
		Reason: fmt.Sprintf("phase %s held incomplete only by %d finished task result(s)", wf.Phase, len(incomplete)),
	}
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

// latestFinishedAt returns the latest node finishedAt, verbatim, so the value written is derived
// from the object and identical on every evaluation. Unparsable timestamps make it give up.
func latestFinishedAt(nodes map[string]Node) (string, bool) {
	var latest time.Time
	var raw string
	for _, n := range nodes {
		if n.FinishedAt == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, n.FinishedAt)
		if err != nil {
			return "", false
		}
		if raw == "" || t.After(latest) || (t.Equal(latest) && n.FinishedAt < raw) {
			latest, raw = t, n.FinishedAt
		}
	}
	return raw, raw != ""
}
