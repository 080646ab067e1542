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

// kubeReview builds a review as kube-apiserver writes it (uid, kind, ... userInfo before object,
// the object's keys sorted: metadata.labels before status), unlike reviewJSON's sorted keys
// (object before operation, uid and userInfo).
func kubeReview(t *testing.T, kind, op string, object, oldObject map[string]any) []byte {
	t.Helper()
	return benchReviewOp(kind, op, object, oldObject)
}

// Every strict prefix of a review is malformed: the one-pass reader answers it with HTTP 400 or,
// when what it read before the cut already settled the request (the labels, mostly), allowed
// without a patch, at every cut; it never patches and never panics.
func TestTruncatedReviewsAreNeverPatched(t *testing.T) {
	pods := &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": resourcePod()}}
	opts := HandlerOptions{Pods: pods, Log: logr.Discard()}
	workflows := func() http.Handler {
		return NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: logr.Discard(),
			Workflow: rules.WorkflowConfig{ControllerUsernames: []string{controllerSA}}})
	}
	running := stuckWorkflowObject(func(wf map[string]any) {
		wf["metadata"].(map[string]any)["labels"].(map[string]any)[rules.LabelPhase] = "Running"
	})
	trCreate := taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"})
	trDone := taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "true"})
	cases := map[string]struct {
		h       http.Handler
		body    []byte
		patched bool // the whole review gets a patch
		early   bool // some cuts are answered from what precedes them
	}{
		"workflow in the stuck shape":                         {h: workflows(), body: reviewJSON(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil)), patched: true},
		"workflow in the stuck shape, kube-apiserver's order": {h: workflows(), body: kubeReview(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil)), patched: true},
		"running workflow, kube-apiserver's order":            {h: workflows(), body: kubeReview(t, "Workflow", rules.OperationUpdate, running, running), early: true},
		"running workflow, uid after the objects":             {h: workflows(), body: reviewJSON(t, "Workflow", rules.OperationUpdate, running, running), early: true},
		"task result create":                                  {h: NewTaskResultHandler(opts), body: reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate, trCreate, nil), patched: true},
		"task result create, kube-apiserver's order":          {h: NewTaskResultHandler(opts), body: kubeReview(t, "WorkflowTaskResult", rules.OperationCreate, trCreate, nil), patched: true},
		"complete task result update, kube-apiserver's order": {h: NewTaskResultHandler(opts), body: kubeReview(t, "WorkflowTaskResult", rules.OperationUpdate, trDone, trDone), early: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, resp := serveReview(t, tc.h, tc.body)
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, tc.patched, resp.Patch != nil, "the whole review")
			uid := resp.UID
			early := 0
			for cut := 0; cut < len(tc.body); cut++ {
				code, resp := serveReview(t, tc.h, tc.body[:cut])
				if code == http.StatusOK {
					early++
					assert.Equal(t, uid, resp.UID, "cut at %d: answered early, with the uid", cut)
				} else if !assert.Equal(t, http.StatusBadRequest, code, "cut at %d: %q", cut, tc.body[max(0, cut-20):cut]) {
					return
				}
				if !assert.Nil(t, resp.Patch, "cut at %d: %q", cut, tc.body[max(0, cut-20):cut]) {
					return
				}
			}
			assert.Equal(t, tc.early, early > 0, "%d cuts answered early", early)
		})
	}
}

// A review that would be patched whole is never patched once any one byte is made malformed:
// the patch is built only after the whole body has been read and found valid JSON.
func TestMalformedByteAnywhereIsNeverPatched(t *testing.T) {
	pods := &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": resourcePod()}}
	cases := map[string]struct {
		h    http.Handler
		body []byte
	}{
		"workflow in the stuck shape": {NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: logr.Discard()}),
			kubeReview(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(func(wf map[string]any) {
				status(wf)["progress"] = "1/1"
				status(wf)["estimatedDuration"] = -1.5e3
				status(wf)["message"] = "tab\there, \"quoted\", \u00e9"
			}), stuckWorkflowObject(nil))},
		"task result update": {NewTaskResultHandler(HandlerOptions{Pods: pods, Log: logr.Discard()}),
			kubeReview(t, "WorkflowTaskResult", rules.OperationUpdate,
				taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
				map[string]any{"metadata": map[string]any{"name": "wf-3571860313"}, "progress": "0/1", "exitCode": 0})},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, resp := serveReview(t, tc.h, tc.body)
			require.Equal(t, http.StatusOK, code)
			require.NotNil(t, resp.Patch, "the review as sent is patched")
			invalid := 0
			mutated := make([]byte, len(tc.body))
			for i := range tc.body {
				for _, b := range []byte{'"', '\\', '{', '}', '[', ']', ',', ':', 'x', '0', '-', ' ', 0x01, 0xff} {
					copy(mutated, tc.body)
					mutated[i] = b
					if json.Valid(mutated) {
						continue // still valid JSON (a byte inside a string, a digit in a number)
					}
					invalid++
					code, resp := serveReview(t, tc.h, mutated)
					if !assert.Nil(t, resp.Patch, "byte %d set to %q: %q", i, b, mutated[max(0, i-20):min(len(mutated), i+20)]) {
						return
					}
					assert.Contains(t, []int{http.StatusOK, http.StatusBadRequest}, code)
				}
			}
			t.Logf("%d malformed variants of %d bytes, none patched", invalid, len(tc.body))
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
	w := readWorkflowObject(t, raw)
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
	assert.Equal(t, want.Metadata.Name, w.name)
	assert.Equal(t, want.Metadata.Labels, w.labels)
	assert.Equal(t, want.Status.Phase, w.phase)
	require.NotNil(t, w.nodes)
	assert.Equal(t, rules.SummarizeNodes(want.Status.Nodes), w.nodes.summary)
	assert.Empty(t, w.nodes.unreadable())
	for id, n := range want.Status.Nodes {
		got, ok, err := w.nodes.node(id)
		require.NoError(t, err)
		assert.True(t, ok, id)
		assert.Equal(t, n, got, "node %s read again from where it was found", id)
	}
	_, ok, err := w.nodes.node("wf-0")
	assert.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, want.Status.TaskResultsCompletionStatus, w.completion)
	assert.Equal(t, want.Status.Conditions, w.status.conditions)
	assert.Equal(t, "null", string(w.status.FinishedAt), "finishedAt: null is present, and replaced")
}

// readWorkflowObject reads a Workflow object as the handler does, inside a review.
func readWorkflowObject(t *testing.T, raw []byte) *workflowReader {
	t.Helper()
	w := &workflowReader{}
	rs := &reviewScan{s: &scanner{data: raw}, obj: w}
	require.NoError(t, w.read(rs))
	require.NoError(t, rs.s.end())
	return w
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
			var fast rules.Workflow
			require.NoError(t, readWorkflowObject(t, raw).withStatus(&fast))
			var obj struct {
				Status json.RawMessage `json:"status"`
			}
			require.NoError(t, json.Unmarshal(raw, &obj))
			plain, err := rules.ParseWorkflowStatus(obj.Status)
			require.NoError(t, err)
			// The one-pass reader keeps the nodes' summary and only the nodes of incomplete
			// entries; nothing of the nodes when they cannot be read.
			want := plain
			want.Nodes = nil
			if plain.NodesUnreadable == "" {
				sum := rules.SummarizeNodes(plain.Nodes)
				want.Summary = &sum
				for id, done := range plain.TaskResultsCompletion {
					if n, ok := plain.Nodes[id]; ok && !done {
						if want.Nodes == nil {
							want.Nodes = map[string]rules.Node{}
						}
						want.Nodes[id] = n
					}
				}
			}
			assert.Equal(t, want, fast)
		})
	}
}

// skipNullableStr, for a value not kept, accepts exactly what nullableStr accepts and stops
// where it stops.
func TestSkipNullableStrAgreesWithNullableStr(t *testing.T) {
	cases := map[string]string{
		"a plain string":           `"2024-04-26T10:50:27Z",`,
		"an escaped string":        `"a\u00e9\"\\\n",`,
		"null":                     `null,`,
		"leading space":            " \t\n\"x\"}",
		"the empty string":         `""`,
		"a number":                 `5,`,
		"an object":                `{}`,
		"an array":                 `["x"]`,
		"true":                     `true`,
		"a misspelt null":          `nil,`,
		"a cut null":               `nu`,
		"a cut string":             `"abc`,
		"a cut escape":             `"a\u00`,
		"a bad escape":             `"a\x"`,
		"a bad unicode escape":     `"a\u00g0"`,
		"a control character":      "\"a\tb\"",
		"nothing":                  ``,
		"only space":               `   `,
		"a string in single quote": `'x'`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			kept := &scanner{data: []byte(in)}
			_, _, wantErr := kept.nullableStr()
			skipped := &scanner{data: []byte(in)}
			err := skipped.skipNullableStr()
			if wantErr != nil {
				require.Error(t, err)
				assert.Equal(t, wantErr.Error(), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, kept.pos, skipped.pos)
		})
	}
}
