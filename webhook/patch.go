package webhook

import (
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// escapePointer escapes one JSON Pointer reference token (RFC 6901): "~" → "~0", "/" → "~1".
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// labelOperations returns the operations that set the decided labels: one add of the whole map
// when the object has no labels, otherwise a replace of each existing key and an add of each new
// one, in key order.
func labelOperations(labels, set map[string]string) []jsonpatch.Operation {
	if len(set) == 0 {
		return nil
	}
	if labels == nil {
		return []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/labels", set)}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ops := make([]jsonpatch.Operation, 0, len(keys))
	for _, k := range keys {
		op := "add"
		if _, ok := labels[k]; ok {
			op = "replace"
		}
		ops = append(ops, jsonpatch.NewOperation(op, "/metadata/labels/"+escapePointer(k), set[k]))
	}
	return ops
}

// statusOperations returns the operations that write rule B2's status change: finishedAt, the
// Completed condition (upserted as the controller's UpsertCondition does) and the
// taskResultsCompletionStatus entries.
func statusOperations(st *workflowStatus, ch *rules.StatusChange) []jsonpatch.Operation {
	if ch == nil {
		return nil
	}
	ops := make([]jsonpatch.Operation, 0, 2+len(ch.CompleteTaskResults))
	op := "add"
	if st.FinishedAt != nil {
		op = "replace"
	}
	ops = append(ops, jsonpatch.NewOperation(op, "/status/finishedAt", ch.FinishedAt))

	done := statusCondition{Type: rules.ConditionCompleted, Status: rules.ConditionTrue}
	switch i := slices.IndexFunc(st.conditions, func(c statusCondition) bool { return c.Type == rules.ConditionCompleted }); {
	case present(st.Conditions) == nil:
		ops = append(ops, jsonpatch.NewOperation("add", "/status/conditions", []statusCondition{done}))
	case i >= 0:
		ops = append(ops, jsonpatch.NewOperation("replace", "/status/conditions/"+strconv.Itoa(i), done))
	default:
		ops = append(ops, jsonpatch.NewOperation("add", "/status/conditions/-", done))
	}
	for _, id := range ch.CompleteTaskResults {
		ops = append(ops, jsonpatch.NewOperation("replace", "/status/taskResultsCompletionStatus/"+escapePointer(id), true))
	}
	return ops
}
