package webhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// taskResult builds a rule input for the #12985 write: a CREATE with outputs and label "false".
func taskResult(mods ...func(*TaskResult)) TaskResult {
	tr := TaskResult{
		Operation: opCreate,
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
				tr.Operation = opUpdate
				tr.OldOutputs = nil
			}),
			pod: resourcePod(), wantSet: setTrue, wantRule: "A1",
		},
		"sets label when an update changes the outputs": {
			tr: taskResult(func(tr *TaskResult) {
				tr.Operation = opUpdate
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
				tr.Operation = opUpdate
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

func TestDecideStuckTaskResult(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	grace := RepairGrace{Pod: 2 * time.Minute, Orphan: 10 * time.Minute}
	stuck := func(mods ...func(*StuckTaskResult)) StuckTaskResult {
		tr := StuckTaskResult{Name: "wf-1", Labels: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueFalse},
			Created: now.Add(-time.Hour)}
		for _, m := range mods {
			m(&tr)
		}
		return tr
	}
	pod := func(containers ...Container) *Pod { return &Pod{Name: "wf-main-1", Containers: containers} }
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := map[string]struct {
		tr     StuckTaskResult
		pod    *Pod
		repair bool
	}{
		"repairs a resource pod whose main terminated long ago": {
			tr: stuck(), pod: pod(Container{Name: "main", Terminated: true, TerminatedAt: ago(5 * time.Minute)}), repair: true,
		},
		"repairs a wait-container pod whose wait terminated long ago, main's state aside": {
			tr: stuck(), pod: pod(Container{Name: "wait", Terminated: true, TerminatedAt: ago(3 * time.Minute)}, Container{Name: "main", Terminated: true, TerminatedAt: ago(4 * time.Minute)}), repair: true,
		},
		"repairs when the label is absent": {
			tr:  stuck(func(tr *StuckTaskResult) { delete(tr.Labels, LabelReportOutputsCompleted) }),
			pod: pod(Container{Name: "main", Terminated: true, TerminatedAt: ago(5 * time.Minute)}), repair: true,
		},
		"repairs when the pod is gone and the node finished long ago": {
			tr: stuck(func(tr *StuckTaskResult) { tr.NodeFinishedAt = ago(11 * time.Minute) }), repair: true,
		},
		"repairs when the pod is gone, no node, and the result is old": {
			tr: stuck(func(tr *StuckTaskResult) { tr.Created = ago(11 * time.Minute) }), repair: true,
		},
		"skips a resource pod still running": {
			tr: stuck(), pod: pod(Container{Name: "main"}),
		},
		"skips a wait-container pod whose wait still runs": {
			tr: stuck(), pod: pod(Container{Name: "wait"}, Container{Name: "main", Terminated: true, TerminatedAt: ago(time.Hour)}),
		},
		"skips executors terminated within the pod grace": {
			tr: stuck(), pod: pod(Container{Name: "main", Terminated: true, TerminatedAt: ago(time.Minute)}),
		},
		"skips a pod gone recently": {
			tr: stuck(func(tr *StuckTaskResult) { tr.NodeFinishedAt = ago(time.Minute) }),
		},
		"skips a pod gone with a young result and no node": {
			tr: stuck(func(tr *StuckTaskResult) { tr.Created = ago(time.Minute) }),
		},
		"skips a result already true": {
			tr:  stuck(func(tr *StuckTaskResult) { tr.Labels[LabelReportOutputsCompleted] = valueTrue }),
			pod: pod(Container{Name: "main", Terminated: true, TerminatedAt: ago(time.Hour)}),
		},
		"skips a result without the workflow label": {
			tr:  stuck(func(tr *StuckTaskResult) { delete(tr.Labels, LabelWorkflow) }),
			pod: pod(Container{Name: "main", Terminated: true, TerminatedAt: ago(time.Hour)}),
		},
		"skips a terminated container without a termination time": {
			tr: stuck(), pod: pod(Container{Name: "main", Terminated: true}),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := DecideStuckTaskResult(tc.tr, tc.pod, now, grace)
			assert.NotEmpty(t, d.Reason)
			if tc.repair {
				assert.Equal(t, map[string]string{LabelReportOutputsCompleted: valueTrue}, d.Set)
				assert.Equal(t, "A3", d.Rule)
				applied := tc.tr
				applied.Labels = map[string]string{LabelWorkflow: tc.tr.Labels[LabelWorkflow], LabelReportOutputsCompleted: valueTrue}
				assert.False(t, DecideStuckTaskResult(applied, tc.pod, now, grace).Mutates(), "idempotent")
			} else {
				assert.False(t, d.Mutates(), d.Reason)
			}
		})
	}
}
