package rules

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
)

// taskResult builds a rule input for the #12985 write: a CREATE with outputs and label "false".
func taskResult(mods ...func(*TaskResult)) TaskResult {
	tr := TaskResult{
		Operation: OperationCreate,
		Name:      "wf-3571860313",
		Labels: map[string]string{
			LabelWorkflow:               "wf",
			LabelReportOutputsCompleted: valueFalse,
		},
		Outputs:          json.RawMessage(`{"parameters":[{"name":"job-name","value":"pi-x2"}]}`),
		OwnerWorkflowUID: "uid-1",
	}
	for _, m := range mods {
		m(&tr)
	}
	return tr
}

// resourcePod is the pod of a resource or data template: main only.
func resourcePod() *Pod {
	return &Pod{Name: "wf-main-3571860313", WorkflowUID: "uid-1", Containers: []Container{{Name: "main"}}}
}

// waitPod is the pod of a container template: main and wait.
func waitPod() *Pod {
	return &Pod{Name: "wf-main-3571860313", WorkflowUID: "uid-1", Containers: []Container{{Name: "wait"}, {Name: "main"}}}
}

func TestDecideTaskResult(t *testing.T) {
	setTrue := map[string]string{LabelReportOutputsCompleted: valueTrue}
	cases := map[string]struct {
		tr       TaskResult
		pod      *Pod
		wantSet  map[string]string
		wantRule string
	}{
		"sets label on the #12985 create from a resource pod": {
			tr: taskResult(), pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label on the outputs merge patch to a placeholder (v3.5.5+ sequence) from a data pod": {
			tr: taskResult(func(tr *TaskResult) {
				tr.Operation = OperationUpdate
				tr.OldOutputs = nil
			}),
			pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label when an update changes the outputs": {
			tr: taskResult(func(tr *TaskResult) {
				tr.Operation = OperationUpdate
				tr.OldOutputs = json.RawMessage(`{"parameters":[{"name":"job-name","value":"other"}]}`)
			}),
			pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label when the writer's token names the node's own pod": {
			tr:  taskResult(func(tr *TaskResult) { tr.WriterPod = "wf-main-3571860313" }),
			pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label when outputs are an empty object": {
			tr:  taskResult(func(tr *TaskResult) { tr.Outputs = json.RawMessage(`{}`) }),
			pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label for an old executor that never sets it, whatever the pod layout": {
			tr:  taskResult(func(tr *TaskResult) { delete(tr.Labels, LabelReportOutputsCompleted) }),
			pod: waitPod(), wantSet: setTrue, wantRule: "A1b",
		},
		"leaves a wait-container pod's result to its own FinalizeOutput": {
			tr: taskResult(), pod: waitPod(),
		},
		"leaves a supervisor-container pod's result to its own FinalizeOutput": {
			tr:  taskResult(),
			pod: &Pod{Name: "wf-main-3571860313", Containers: []Container{{Name: "main"}, {Name: "supervisor"}}},
		},
		"ignores the placeholder create without outputs": {
			tr: taskResult(func(tr *TaskResult) { tr.Outputs = nil }), pod: resourcePod(),
		},
		"ignores a progress-only patch that keeps the stored outputs": {
			tr: taskResult(func(tr *TaskResult) {
				tr.Operation = OperationUpdate
				tr.OldOutputs = json.RawMessage(` {"parameters": [{"name":"job-name", "value":"pi-x2"}]}`)
			}),
			pod: resourcePod(),
		},
		"ignores a result already true": {
			tr:  taskResult(func(tr *TaskResult) { tr.Labels[LabelReportOutputsCompleted] = valueTrue }),
			pod: resourcePod(),
		},
		"ignores a result without the workflow label": {
			tr: taskResult(func(tr *TaskResult) { delete(tr.Labels, LabelWorkflow) }), pod: resourcePod(),
		},
		"ignores a result without any labels": {
			tr: taskResult(func(tr *TaskResult) { tr.Labels = nil }), pod: resourcePod(),
		},
		"ignores a result whose pod is not found": {
			tr: taskResult(), pod: nil,
		},
		"ignores a writer whose token names another node's pod": {
			tr:  taskResult(func(tr *TaskResult) { tr.WriterPod = "wf-main-1111111111" }),
			pod: resourcePod(),
		},
		"ignores a writer whose token names another workflow's pod": {
			tr:  taskResult(func(tr *TaskResult) { tr.WriterPod = "other-wf-main-3571860313" }),
			pod: resourcePod(),
		},
		"ignores a result owned by another incarnation of the workflow": {
			tr: taskResult(func(tr *TaskResult) { tr.OwnerWorkflowUID = "uid-2" }), pod: resourcePod(),
		},
		"ignores DELETE": {
			tr: taskResult(func(tr *TaskResult) { tr.Operation = "DELETE" }), pod: resourcePod(),
		},
		"ignores an old executor's write without outputs": {
			tr: taskResult(func(tr *TaskResult) {
				delete(tr.Labels, LabelReportOutputsCompleted)
				tr.Outputs = nil
			}),
			pod: resourcePod(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := DecideTaskResult(tc.tr, tc.pod)
			assert.Equal(t, tc.wantSet, d.Set)
			assert.Equal(t, tc.wantRule, d.Rule)
			assert.NotEmpty(t, d.Reason, "every decision says why")
			assert.Nil(t, d.Status, "task result rules never touch status")
		})
	}
}

func TestDecideTaskResultIsIdempotent(t *testing.T) {
	for name, tc := range map[string]struct {
		tr  TaskResult
		pod *Pod
	}{
		"A1 on a resource pod":       {taskResult(), resourcePod()},
		"A1b on an old executor pod": {taskResult(func(tr *TaskResult) { delete(tr.Labels, LabelReportOutputsCompleted) }), waitPod()},
	} {
		t.Run(name, func(t *testing.T) {
			first := DecideTaskResult(tc.tr, tc.pod)
			assert.True(t, first.Mutates())
			applied := tc.tr
			applied.Labels = map[string]string{}
			for k, v := range tc.tr.Labels {
				applied.Labels[k] = v
			}
			for k, v := range first.Set {
				applied.Labels[k] = v
			}
			second := DecideTaskResult(applied, tc.pod)
			assert.False(t, second.Mutates(), "running the rule on its own output decides nothing")
		})
	}
}
