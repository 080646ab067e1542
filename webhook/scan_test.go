package webhook

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// Every strict prefix of a review is malformed: the one-pass reader must say so (HTTP 400) at
// every cut, never patch, never panic, although it decodes almost nothing it skips.
func TestTruncatedReviewsAreRejectedAtEveryByte(t *testing.T) {
	pods := &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": resourcePod()}}
	opts := HandlerOptions{Pods: pods, Log: logr.Discard()}
	cases := map[string]struct {
		h    http.Handler
		body []byte
	}{
		"workflow in the stuck shape": {NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: logr.Discard()}), reviewJSON(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil))},
		"task result create":          {NewTaskResultHandler(opts), reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate, taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil)},
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
			Phase                       string                `json:"phase"`
			Nodes                       map[string]rules.Node `json:"nodes"`
			TaskResultsCompletionStatus map[string]bool       `json:"taskResultsCompletionStatus"`
			Conditions                  []statusCondition
		} `json:"status"`
	}
	require.NoError(t, json.Unmarshal(raw, &want))
	assert.Equal(t, want.Metadata.Name, head.Name)
	assert.Equal(t, want.Metadata.Labels, head.Labels)
	var got rules.Workflow
	st, err := readWorkflowStatus(head.Status, &got)
	require.NoError(t, err)
	assert.Equal(t, want.Status.Phase, got.Phase)
	assert.Equal(t, want.Status.Nodes, got.Nodes)
	assert.Equal(t, want.Status.TaskResultsCompletionStatus, got.TaskResultsCompletion)
	assert.Equal(t, want.Status.Conditions, st.conditions)
	assert.Equal(t, "null", string(st.FinishedAt), "finishedAt: null is present, and replaced")
}

// The one-pass reader rule B2 reads a Workflow's status with, and rules.ParseWorkflowStatus the
// repair command reads it with, must see the same workflow.
func TestWorkflowStatusReaderAgreesWithRulesParseWorkflowStatus(t *testing.T) {
	cases := map[string]func(wf map[string]any){
		"the stuck shape": nil,
		"compressed nodes": func(wf map[string]any) {
			status(wf)["compressedNodes"] = compress(t, status(wf)["nodes"])
			delete(status(wf), "nodes")
		},
		"offloaded nodes": func(wf map[string]any) {
			status(wf)["offloadNodeStatusVersion"] = "fnv:123"
			delete(status(wf), "nodes")
		},
		"corrupt compressed nodes": func(wf map[string]any) { status(wf)["compressedNodes"] = "%%%" },
		"nulls and empty maps": func(wf map[string]any) {
			status(wf)["nodes"], status(wf)["taskResultsCompletionStatus"] = nil, map[string]any{}
		},
		"a node with null fields": func(wf map[string]any) {
			status(wf)["nodes"] = map[string]any{"wf-1": map[string]any{"type": nil, "phase": "Running", "finishedAt": nil, "outputs": nil, "taskResultSynced": true, "daemoned": nil}}
		},
		"no status": func(wf map[string]any) { delete(wf, "status") },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(stuckWorkflowObject(mod))
			require.NoError(t, err)
			head, err := readWorkflowHead(raw)
			require.NoError(t, err)
			var fast rules.Workflow
			_, err = readWorkflowStatus(head.Status, &fast)
			require.NoError(t, err)
			plain, err := rules.ParseWorkflowStatus(head.Status)
			require.NoError(t, err)
			assert.Equal(t, fast, plain)
		})
	}
}
