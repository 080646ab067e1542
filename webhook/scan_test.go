package webhook

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every strict prefix of a review is malformed: the one-pass reader must say so (HTTP 400) at
// every cut, never patch, never panic, although it decodes almost nothing it skips.
func TestTruncatedReviewsAreRejectedAtEveryByte(t *testing.T) {
	pods := &podTable{pods: map[string]*Pod{"argo/wf/wf-3571860313": resourcePod()}}
	opts := HandlerOptions{Pods: pods, Log: logr.Discard()}
	cases := map[string]struct {
		h    http.Handler
		body []byte
	}{
		"workflow in the stuck shape": {NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: logr.Discard()}), reviewJSON(t, "Workflow", opUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil))},
		"task result create":          {NewTaskResultHandler(opts), reviewJSON(t, "WorkflowTaskResult", opCreate, taskResultObject12985(map[string]any{LabelWorkflow: "wf", LabelReportOutputsCompleted: "false"}), nil)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, resp := serveReview(t, tc.h, tc.body)
			require.Equal(t, http.StatusOK, code)
			require.NotNil(t, resp.Patch, "the whole body is patched")
			for cut := 0; cut < len(tc.body); cut++ {
				code, resp := serveReview(t, tc.h, tc.body[:cut])
				if !assert.Equal(t, http.StatusBadRequest, code, "cut at %d: %q", cut, tc.body[max(0, cut-20):cut]) {
					return
				}
				assert.Nil(t, resp.Patch)
			}
		})
	}
}

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	wf := stuckWorkflowObject(func(wf map[string]any) {
		status(wf)["conditions"] = []any{map[string]any{"type": "Completed", "status": "False", "message": "a \"quoted\" \\ message"}}
		wf["metadata"].(map[string]any)["labels"].(map[string]any)["example.com/esc\"aped"] = "v\u00e9\n"
	})
	raw, err := json.Marshal(wf)
	require.NoError(t, err)
	head, err := readWorkflowHead(raw)
	require.NoError(t, err)
	var want struct {
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Status struct {
			Phase                       string          `json:"phase"`
			Nodes                       map[string]Node `json:"nodes"`
			TaskResultsCompletionStatus map[string]bool `json:"taskResultsCompletionStatus"`
			Conditions                  []statusCondition
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal(raw, &want))
	assert.Equal(t, want.Metadata.Name, head.Name)
	assert.Equal(t, want.Metadata.Labels, head.Labels)
	var got Workflow
	st, err := readWorkflowStatus(head.Status, &got)
	require.NoError(t, err)
	assert.Equal(t, want.Status.Phase, got.Phase)
	assert.Equal(t, want.Status.Nodes, got.Nodes)
	assert.Equal(t, want.Status.TaskResultsCompletionStatus, got.TaskResultsCompletion)
	assert.Equal(t, want.Status.Conditions, st.conditions)
	assert.Equal(t, "null", string(st.FinishedAt), "finishedAt: null is present, and replaced")
}
