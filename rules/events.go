package rules

import (
	"fmt"
	"sort"
	"strings"
)

// Event reasons, one per action. Audit mode prefixes "Would".
const (
	ReasonTaskResultCompleted = "TaskResultCompleted" // A1, A1b: the webhook set the label
	ReasonWorkflowCompleted   = "WorkflowCompleted"   // B2
	ReasonTaskResultRepaired  = "TaskResultRepaired"  // A3: the repair command set the label
	ReasonTaskResultCreated   = "TaskResultCreated"   // the repair command created a missing one
)

// EventReason returns the Event reason of a mutating decision.
func EventReason(d Decision, audit bool) string {
	reason := ReasonTaskResultCompleted
	switch d.Rule {
	case "B2":
		reason = ReasonWorkflowCompleted
	case "A3":
		reason = ReasonTaskResultRepaired
	}
	if audit {
		return "Would" + reason
	}
	return reason
}

// EventMessage returns the Event message of a mutating decision: the rule, the node and what was
// set, and the rule's reason.
func EventMessage(d Decision, audit bool, nodeID string) string {
	keys := make([]string, 0, len(d.Set))
	for k := range d.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	set := make([]string, 0, len(keys))
	for _, k := range keys {
		set = append(set, k+"="+d.Set[k])
	}
	verb := "set"
	if audit {
		verb = "would set (audit mode)"
	}
	target := "task result " + nodeID
	if d.Rule == "B2" && d.Status != nil {
		target = "the workflow (task results " + strings.Join(d.Status.CompleteTaskResults, ", ") + " marked complete)"
	}
	return fmt.Sprintf("argo-completion-webhook rule %s %s %s on %s: %s", d.Rule, verb, strings.Join(set, ","), target, d.Reason)
}
