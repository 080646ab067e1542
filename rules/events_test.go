package rules

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEventReasonAndMessage(t *testing.T) {
	a1 := Decision{Set: map[string]string{LabelReportOutputsCompleted: valueTrue}, Rule: "A1", Reason: "outputs written by a resource pod"}
	b2 := Decision{Set: map[string]string{LabelCompleted: valueTrue, LabelArchivingStatus: archivePending}, Rule: "B2", Reason: "stuck",
		Status: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1", "wf-2"}}}
	a3 := Decision{Set: map[string]string{LabelReportOutputsCompleted: valueTrue}, Rule: "A3", Reason: "the executor terminated"}
	cases := map[string]struct {
		d           Decision
		audit       bool
		wantReason  string
		wantMessage string
	}{
		"A1 names the task result": {
			d: a1, wantReason: ReasonTaskResultCompleted,
			wantMessage: "argo-completion-webhook rule A1 set workflows.argoproj.io/report-outputs-completed=true on task result wf-1: outputs written by a resource pod",
		},
		"audit mode says would": {
			d: a1, audit: true, wantReason: "Would" + ReasonTaskResultCompleted,
			wantMessage: "argo-completion-webhook rule A1 would set (audit mode) workflows.argoproj.io/report-outputs-completed=true on task result wf-1: outputs written by a resource pod",
		},
		"B2 names the workflow and the task results it marks, labels sorted": {
			d: b2, wantReason: ReasonWorkflowCompleted,
			wantMessage: "argo-completion-webhook rule B2 set workflows.argoproj.io/completed=true,workflows.argoproj.io/workflow-archiving-status=Pending on the workflow (task results wf-1, wf-2 marked complete): stuck",
		},
		"A3 is the repair's": {
			d: a3, wantReason: ReasonTaskResultRepaired,
			wantMessage: "argo-completion-webhook rule A3 set workflows.argoproj.io/report-outputs-completed=true on task result wf-1: the executor terminated",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.wantReason, EventReason(tc.d, tc.audit))
			assert.Equal(t, tc.wantMessage, EventMessage(tc.d, tc.audit, "wf-1"))
		})
	}
}
