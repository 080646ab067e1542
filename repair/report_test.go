package repair

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// reportRows are three nodes of two stuck workflows: one repaired (#12985), one for the operator
// (R2), one waiting (R4).
var reportRows = []Row{
	{Namespace: "argo", Workflow: "wf-a", WorkflowPhase: "Running", Node: "wf-a-1", Pod: "wf-a-1-pod", TaskResult: "true (flipped)",
		Cause: rules.Cause12985, Action: rules.ActionFlip, Verdict: VerdictRepaired, NextStep: "repaired", Reason: "resource pod"},
	{Namespace: "argo", Workflow: "wf-a", WorkflowPhase: "Running", Node: "wf-a-2", Pod: "wf-a-2-pod", TaskResult: "missing",
		Cause: rules.CauseR2, Verdict: VerdictManual, NextStep: "fix RBAC for argo/runner, then run repair", Reason: "may not create"},
	{Namespace: "argo", Workflow: "wf-b", WorkflowPhase: "Running", Node: "wf-b-1", TaskResult: "false",
		Cause: rules.CauseR4, Action: rules.ActionFlip, Verdict: VerdictWait, NextStep: "will repair after 9m0s", Reason: "pod gone"},
}

func TestSummarizeCountsEachCause(t *testing.T) {
	sum := summarize(reportRows)
	assert.Equal(t, Counts{Rows: 3, Repaired: 1, Wait: 1, Manual: 1}, sum.Counts)
	assert.Equal(t, map[string]Counts{
		rules.Cause12985: {Rows: 1, Repaired: 1},
		rules.CauseR2:    {Rows: 1, Manual: 1},
		rules.CauseR4:    {Rows: 1, Wait: 1},
	}, sum.Causes)
}

func TestWriteReport(t *testing.T) {
	sum := summarize(reportRows)
	sum.Scanned, sum.Stuck = 5, 2
	for name, tc := range map[string]struct {
		o    Options
		want []string
	}{
		"prints a table with the cause, verdict and next step, a summary line and a line per cause in the family's order": {
			o: Options{Output: "table", Apply: true},
			want: []string{
				"NAMESPACE  WORKFLOW  PHASE    NODE    POD         TR              CAUSE   VERDICT   NEXT STEP",
				"argo       wf-b      Running  wf-b-1  -           false           R4      wait      will repair after 9m0s",
				"5 workflow(s) not completed, 2 stuck: 3 row(s): 1 repaired, 1 waiting, 1 for the operator; applied\n" +
					"  #12985 1 row(s): 1 repaired\n" +
					"  R2     1 row(s): 1 for the operator\n" +
					"  R4     1 row(s): 1 waiting\n",
			},
		},
		"says when it only reports": {
			o: Options{Output: "table"}, want: []string{"; report only (use --apply to repair)\n"},
		},
		"heads the table with the workflow explained": {
			o:    Options{Output: "table", Workflow: "wf-a"},
			want: []string{"workflow argo/wf-a (phase Running) stuck: Running while every pod has finished (the v3.5.5+ shape)\nNAMESPACE"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			tc.o.Out = &out
			var explained *explanation
			if tc.o.Workflow != "" {
				explained = &explanation{Namespace: "argo", Workflow: "wf-a", Phase: "Running", Stuck: true, Shape: "Running while every pod has finished (the v3.5.5+ shape)"}
			}
			require.NoError(t, write(tc.o, reportRows, sum, explained))
			for _, w := range tc.want {
				assert.Contains(t, out.String(), w)
			}
		})
	}
}

func TestWriteReportAsJSON(t *testing.T) {
	var out bytes.Buffer
	sum := summarize(reportRows)
	require.NoError(t, write(Options{Output: "json", Out: &out}, reportRows, sum, nil))
	var doc struct {
		Applied bool
		Rows    []Row
		Summary Summary
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc))
	assert.Equal(t, reportRows, doc.Rows)
	assert.Equal(t, sum, doc.Summary)
	assert.Contains(t, out.String(), `"nextStep": "fix RBAC for argo/runner, then run repair"`)
	assert.NotContains(t, out.String(), `"workflow": {`, "no explanation without --workflow")
}
