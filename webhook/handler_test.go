package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// controllerSA is the workflow controller's user, as in the rules' tests.
const controllerSA = "system:serviceaccount:argo:argo"

// resourcePod is the pod of a resource or data template: main only.
func resourcePod() *rules.Pod {
	return &rules.Pod{Name: "wf-main-3571860313", WorkflowUID: "uid-1", Containers: []rules.Container{{Name: "main"}}}
}

// waitPod is the pod of a container template: main and wait.
func waitPod() *rules.Pod {
	return &rules.Pod{Name: "wf-main-3571860313", WorkflowUID: "uid-1", Containers: []rules.Container{{Name: "wait"}, {Name: "main"}}}
}

// podTable is a PodLookup over a fixed set of pods keyed by namespace/workflow/nodeID. It is
// safe for concurrent use (the TLS server and load tests serve it from many connections); read
// calls once the requests have been answered.
type podTable struct {
	pods  map[string]*rules.Pod
	err   error
	mu    sync.Mutex
	calls int
}

func (p *podTable) PodForNode(_ context.Context, namespace, workflow, nodeID string) (*rules.Pod, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	return p.pods[namespace+"/"+workflow+"/"+nodeID], nil
}

// taskResultTable is a TaskResultReader over a fixed table keyed namespace/name; it counts reads.
type taskResultTable struct {
	results map[string]*rules.StoredTaskResult
	err     error
	mu      sync.Mutex
	calls   int // gets
	lists   int
}

// TaskResultNames lists the stored task results of namespace whose workflow label is workflow.
func (r *taskResultTable) TaskResultNames(_ context.Context, namespace, workflow string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists++
	if r.err != nil {
		return nil, r.err
	}
	names := []string{}
	for key, tr := range r.results {
		if ns, name, _ := strings.Cut(key, "/"); ns == namespace && tr != nil && tr.Labels[rules.LabelWorkflow] == workflow {
			names = append(names, name)
		}
	}
	return names, nil
}

func (r *taskResultTable) StoredTaskResult(_ context.Context, namespace, name string) (*rules.StoredTaskResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	return r.results[namespace+"/"+name], nil
}

// storedTaskResult12985 is the incomplete task result of stuckWorkflowObject as the API server
// holds it: "false", with the outputs its node already carries.
func storedTaskResult12985() *taskResultTable {
	return &taskResultTable{results: map[string]*rules.StoredTaskResult{"argo/wf-3571860313": {
		Labels:  map[string]string{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"},
		Outputs: json.RawMessage(`{"exitCode":"0"}`),
	}}}
}

// reviewJSON builds an AdmissionReview request body.
func reviewJSON(t *testing.T, kind, op string, object, oldObject any, mods ...func(map[string]any)) []byte {
	t.Helper()
	req := map[string]any{
		"uid":       "c0ffee",
		"kind":      map[string]string{"group": "argoproj.io", "version": "v1alpha1", "kind": kind},
		"namespace": "argo",
		"name":      "wf-3571860313",
		"operation": op,
		"userInfo":  map[string]any{"username": controllerSA},
	}
	if object != nil {
		req["object"] = object
	}
	if oldObject != nil {
		req["oldObject"] = oldObject
	}
	for _, m := range mods {
		m(req)
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	require.NoError(t, err)
	return b
}

// taskResultObject12985 is what argoexec v3.5.4 creates for a resource template with outputs.
func taskResultObject12985(labels map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "WorkflowTaskResult",
		"metadata": map[string]any{
			"name":            "wf-3571860313",
			"namespace":       "argo",
			"labels":          labels,
			"ownerReferences": []any{map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "wf", "uid": "uid-1"}},
		},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "job-name", "value": "pi-x2"}}},
	}
}

// serveReview sends body to h and returns the HTTP status and decoded response.
func serveReview(t *testing.T, h http.Handler, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "response is an AdmissionReview: %s", rec.Body.String())
	assert.Equal(t, "admission.k8s.io/v1", out.APIVersion)
	assert.Equal(t, "AdmissionReview", out.Kind)
	require.NotNil(t, out.Response)
	assert.True(t, out.Response.Allowed, "the webhook never denies")
	return rec.Code, out.Response
}

// patchOf decodes a response's JSON patch, sorted by path.
func patchOf(t *testing.T, resp *admissionv1.AdmissionResponse) []jsonpatch.Operation {
	t.Helper()
	if resp.Patch == nil {
		assert.Nil(t, resp.PatchType)
		return nil
	}
	require.NotNil(t, resp.PatchType)
	assert.Equal(t, admissionv1.PatchTypeJSONPatch, *resp.PatchType)
	var ops []jsonpatch.Operation
	require.NoError(t, json.Unmarshal(resp.Patch, &ops))
	sort.Slice(ops, func(i, j int) bool { return ops[i].Path < ops[j].Path })
	return ops
}

func resourcePods() *podTable {
	return &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": resourcePod()}}
}

func TestTaskResultHandlerPatches(t *testing.T) {
	rocPath := "/metadata/labels/workflows.argoproj.io~1report-outputs-completed"
	cases := map[string]struct {
		op       string
		object   any
		old      any
		mods     []func(map[string]any)
		pods     *podTable
		want     []jsonpatch.Operation
		wantLook int
	}{
		"replaces the label on the #12985 create": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			pods:   resourcePods(), wantLook: 1,
			want: []jsonpatch.Operation{{Operation: "replace", Path: rocPath, Value: "true"}},
		},
		"adds the label when an old executor never set it": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf"}),
			pods:   resourcePods(), wantLook: 1,
			want: []jsonpatch.Operation{{Operation: "add", Path: rocPath, Value: "true"}},
		},
		"patches the outputs merge patch of a placeholder, with oldObject": {
			op:     rules.OperationUpdate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			old: map[string]any{"metadata": map[string]any{"name": "wf-3571860313",
				"labels": map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}}},
			pods: resourcePods(), wantLook: 1,
			want: []jsonpatch.Operation{{Operation: "replace", Path: rocPath, Value: "true"}},
		},
		"keeps labels whose keys hold ~ and / untouched and escapes nothing else": {
			op: rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false",
				"example.com/a~b": "x"}),
			pods: resourcePods(), wantLook: 1,
			want: []jsonpatch.Operation{{Operation: "replace", Path: rocPath, Value: "true"}},
		},
		"patches the same on a dry-run request": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			mods:   []func(map[string]any){func(r map[string]any) { r["dryRun"] = true }},
			pods:   resourcePods(), wantLook: 1,
			want: []jsonpatch.Operation{{Operation: "replace", Path: rocPath, Value: "true"}},
		},
		"does not patch a progress-only update and looks nothing up": {
			op:     rules.OperationUpdate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			old:    taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			pods:   resourcePods(), wantLook: 0,
		},
		"does not patch an object without labels": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(nil),
			pods:   resourcePods(), wantLook: 0,
		},
		"does not patch a wait-container pod's result": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			pods:   &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": waitPod()}}, wantLook: 1,
		},
		"does not patch when the writer's token names another pod": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			mods: []func(map[string]any){func(r map[string]any) {
				r["userInfo"] = map[string]any{"username": "system:serviceaccount:argo:default",
					"extra": map[string]any{rules.ExtraPodName: []string{"other-wf-main-1"}}}
			}},
			pods: resourcePods(), wantLook: 1,
		},
		"does not patch DELETE": {
			op:   "DELETE",
			old:  taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			pods: resourcePods(), wantLook: 0,
		},
		"does not patch when the pod lookup fails": {
			op:     rules.OperationCreate,
			object: taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}),
			pods:   &podTable{err: errors.New("context deadline exceeded")}, wantLook: 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := NewTaskResultHandler(HandlerOptions{Pods: tc.pods, Log: testr.New(t)})
			code, resp := serveReview(t, h, reviewJSON(t, "WorkflowTaskResult", tc.op, tc.object, tc.old, tc.mods...))
			assert.Equal(t, http.StatusOK, code)
			assert.Equal(t, "c0ffee", string(resp.UID))
			assert.Equal(t, tc.want, patchOf(t, resp))
			assert.Equal(t, tc.wantLook, tc.pods.calls, "pod lookups")
		})
	}
}

// ownCounters returns a set of the webhook's counters in a registry of its own, so a test reads
// only what its own handler counted.
func ownCounters(t *testing.T) *Counters {
	t.Helper()
	c, err := NewCounters(prometheus.NewRegistry())
	require.NoError(t, err)
	return c
}

func TestTaskResultHandlerCountsLookupErrors(t *testing.T) {
	counters := ownCounters(t)
	h := NewTaskResultHandler(HandlerOptions{Pods: &podTable{err: errors.New("boom")}, Log: testr.New(t), Counters: counters})
	_, resp := serveReview(t, h, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Nil(t, resp.Patch)
	assert.Equal(t, 1.0, testutil.ToFloat64(counters.lookupErrors))
	assert.Equal(t, 1.0, testutil.ToFloat64(counters.decisions.WithLabelValues("taskresult", "none", "enforce")), "decided: no rule applies")
}

func TestTaskResultHandlerAuditModeWarnsInsteadOfPatching(t *testing.T) {
	counters := ownCounters(t)
	h := NewTaskResultHandler(HandlerOptions{Pods: resourcePods(), Mode: ModeAudit, Log: testr.New(t), Counters: counters})
	_, resp := serveReview(t, h, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Nil(t, resp.Patch)
	require.Len(t, resp.Warnings, 1)
	assert.Contains(t, resp.Warnings[0], "would set /metadata/labels/workflows.argoproj.io~1report-outputs-completed=\"true\"")
	assert.Contains(t, resp.Warnings[0], "rule A1")
	assert.Equal(t, 1.0, testutil.ToFloat64(counters.decisions.WithLabelValues("taskresult", "A1", "audit")))
}

func TestHandlerAllowsOtherKindsUnpatched(t *testing.T) {
	pods := resourcePods()
	tr := NewTaskResultHandler(HandlerOptions{Pods: pods, Log: testr.New(t)})
	code, resp := serveReview(t, tr, reviewJSON(t, "Workflow", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Equal(t, http.StatusOK, code)
	assert.Nil(t, resp.Patch)
	assert.Zero(t, pods.calls)

	wf := NewWorkflowHandler(HandlerOptions{Pods: pods, Log: testr.New(t)})
	code, resp = serveReview(t, wf, reviewJSON(t, "WorkflowTaskResult", rules.OperationUpdate, stuckWorkflowObject(nil), nil))
	assert.Equal(t, http.StatusOK, code)
	assert.Nil(t, resp.Patch)
}

func TestHandlerRejectsMalformedReviews(t *testing.T) {
	valid := reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil)
	cases := map[string]struct {
		body    []byte
		code    int
		message string
		wantUID string
	}{
		"not JSON":                 {body: []byte("hello"), code: 400, message: "not an AdmissionReview"},
		"truncated JSON":           {body: valid[:len(valid)/2], code: 400, message: "not an AdmissionReview"},
		"wrong apiVersion":         {body: []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`), code: 400, message: "expected apiVersion admission.k8s.io/v1", wantUID: "u"},
		"no request":               {body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: 400, message: "has no request"},
		"no uid":                   {body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`), code: 400, message: "has no uid"},
		"label values not strings": {body: bytes.Replace(valid, []byte(`"false"`), []byte(`false`), 1), code: 400, message: "request.object is not a WorkflowTaskResult", wantUID: "c0ffee"},
		"body over the size cap":   {body: append([]byte(`{"apiVersion":"`), bytes.Repeat([]byte("a"), maxBodyBytes)...), code: 413, message: "body larger than"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			counters := ownCounters(t)
			h := NewTaskResultHandler(HandlerOptions{Pods: resourcePods(), Log: testr.New(t), Counters: counters})
			code, resp := serveReview(t, h, tc.body)
			assert.Equal(t, tc.code, code)
			require.NotNil(t, resp.Result)
			assert.Contains(t, resp.Result.Message, tc.message)
			assert.Equal(t, tc.wantUID, string(resp.UID))
			assert.Nil(t, resp.Patch)
			assert.Equal(t, 1.0, testutil.ToFloat64(counters.badRequests), "counted as a bad request")
		})
	}
}

// stuckWorkflowObject is a v3.5.4 Workflow in the #12985 shape; nodes are stored compressed when
// compress is non-nil and *compress is true.
func stuckWorkflowObject(mod func(wf map[string]any)) map[string]any {
	nodes := map[string]any{
		"wf":            map[string]any{"id": "wf", "type": "Steps", "phase": "Succeeded", "finishedAt": "2024-04-26T10:50:45Z", "children": []string{"wf-3571860313"}},
		"wf-3571860313": map[string]any{"id": "wf-3571860313", "type": "Pod", "phase": "Succeeded", "finishedAt": "2024-04-26T10:50:41Z", "outputs": map[string]any{"exitCode": "0"}},
	}
	wf := map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Workflow",
		"metadata": map[string]any{
			"name":      "wf",
			"namespace": "argo",
			"labels":    map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: "Succeeded"},
		},
		"spec": map[string]any{"entrypoint": "main"},
		"status": map[string]any{
			"phase":                       "Succeeded",
			"startedAt":                   "2024-04-26T10:50:27Z",
			"finishedAt":                  nil,
			"conditions":                  []any{map[string]any{"type": "PodRunning", "status": "False"}},
			"nodes":                       nodes,
			"taskResultsCompletionStatus": map[string]any{"wf-3571860313": false},
		},
	}
	if mod != nil {
		mod(wf)
	}
	return wf
}

func compress(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err = zw.Write(raw)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func status(wf map[string]any) map[string]any { return wf["status"].(map[string]any) }

func TestWorkflowHandlerPatches(t *testing.T) {
	b2 := []jsonpatch.Operation{
		{Operation: "replace", Path: "/metadata/labels/workflows.argoproj.io~1completed", Value: "true"},
		{Operation: "add", Path: "/status/conditions/-", Value: map[string]any{"type": "Completed", "status": "True"}},
		{Operation: "replace", Path: "/status/finishedAt", Value: "2024-04-26T10:50:45Z"},
		{Operation: "replace", Path: "/status/taskResultsCompletionStatus/wf-3571860313", Value: true},
	}
	cases := map[string]struct {
		object   map[string]any
		opts     HandlerOptions
		pods     *podTable
		trs      *taskResultTable // nil: storedTaskResult12985()
		want     []jsonpatch.Operation
		wantLook int
		wantRead int
	}{
		"completes the v3.5.4 stuck shape in one response": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1, wantRead: 1, want: b2,
		},
		"completes the stuck shape when the task result is gone": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, trs: &taskResultTable{}, wantLook: 1, wantRead: 1, want: b2,
		},
		"does not patch while a task result has no entry in the completion map": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1, wantRead: 1,
			trs: &taskResultTable{results: map[string]*rules.StoredTaskResult{
				"argo/wf-3571860313": {Labels: map[string]string{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}, Outputs: json.RawMessage(`{"exitCode":"0"}`)},
				"argo/wf-999":        {Labels: map[string]string{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}, Outputs: json.RawMessage(`{"result":"x"}`)}}},
		},
		"does not patch a workflow with the artifact-gc finalizer": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				wf["metadata"].(map[string]any)["finalizers"] = []any{"workflows.argoproj.io/artifact-gc"}
			}),
			pods: &podTable{},
		},
		"does not patch while the stored task result holds outputs its node lacks": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1, wantRead: 1,
			trs: &taskResultTable{results: map[string]*rules.StoredTaskResult{"argo/wf-3571860313": {
				Labels: map[string]string{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}, Outputs: json.RawMessage(`{"exitCode":"0","result":"late"}`)}}},
		},
		"does not patch while the stored task result is already complete": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1, wantRead: 1,
			trs: &taskResultTable{results: map[string]*rules.StoredTaskResult{"argo/wf-3571860313": {
				Labels: map[string]string{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "true"}, Outputs: json.RawMessage(`{"exitCode":"0"}`)}}},
		},
		"does not patch when the task result cannot be read": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, trs: &taskResultTable{err: errors.New("timeout")}, wantLook: 1,
		},
		"does not patch and reads no task result within the grace": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1,
			opts: HandlerOptions{Workflow: rules.WorkflowConfig{Grace: 2 * time.Minute},
				Now: func() time.Time { return time.Date(2024, 4, 26, 10, 51, 0, 0, time.UTC) }},
		},
		"does not patch and reads nothing when B2 is turned off": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, opts: HandlerOptions{Workflow: rules.WorkflowConfig{Disabled: true}},
		},
		"completes the stuck shape stored as compressedNodes": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				st := status(wf)
				st["compressedNodes"] = compress(t, st["nodes"])
				delete(st, "nodes")
			}),
			pods: &podTable{}, wantLook: 1, wantRead: 1, want: b2,
		},
		"adds conditions and finishedAt when the status has neither key": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				delete(status(wf), "conditions")
				delete(status(wf), "finishedAt")
			}),
			pods: &podTable{}, wantLook: 1, wantRead: 1,
			want: []jsonpatch.Operation{
				{Operation: "replace", Path: "/metadata/labels/workflows.argoproj.io~1completed", Value: "true"},
				{Operation: "add", Path: "/status/conditions", Value: []any{map[string]any{"type": "Completed", "status": "True"}}},
				{Operation: "add", Path: "/status/finishedAt", Value: "2024-04-26T10:50:45Z"},
				{Operation: "replace", Path: "/status/taskResultsCompletionStatus/wf-3571860313", Value: true},
			},
		},
		"replaces an existing Completed condition": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				status(wf)["conditions"] = []any{map[string]any{"type": "PodRunning", "status": "False"}, map[string]any{"type": "Completed", "status": "False"}}
			}),
			pods: &podTable{}, wantLook: 1, wantRead: 1,
			want: []jsonpatch.Operation{
				{Operation: "replace", Path: "/metadata/labels/workflows.argoproj.io~1completed", Value: "true"},
				{Operation: "replace", Path: "/status/conditions/1", Value: map[string]any{"type": "Completed", "status": "True"}},
				{Operation: "replace", Path: "/status/finishedAt", Value: "2024-04-26T10:50:45Z"},
				{Operation: "replace", Path: "/status/taskResultsCompletionStatus/wf-3571860313", Value: true},
			},
		},
		"adds the archive label when the controller archives": {
			object: stuckWorkflowObject(nil), pods: &podTable{}, wantLook: 1, wantRead: 1,
			opts: HandlerOptions{Workflow: rules.WorkflowConfig{Archive: true}},
			want: append([]jsonpatch.Operation{
				{Operation: "add", Path: "/metadata/labels/workflows.argoproj.io~1workflow-archiving-status", Value: "Pending"},
			}, b2...),
		},
		"does not patch when the pod's executor still runs": {
			object: stuckWorkflowObject(nil), wantLook: 1,
			pods: &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": {Name: "wf-main-3571860313", Containers: []rules.Container{{Name: "main"}}}}},
		},
		"does not patch and reads no pods when nodes are offloaded": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				delete(status(wf), "nodes")
				status(wf)["offloadNodeStatusVersion"] = "fnv:123"
			}),
			pods: &podTable{},
		},
		"does not patch corrupt compressedNodes (bad base64)": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				delete(status(wf), "nodes")
				status(wf)["compressedNodes"] = "%%%"
			}),
			pods: &podTable{},
		},
		"does not patch corrupt compressedNodes (not gzip)": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				delete(status(wf), "nodes")
				status(wf)["compressedNodes"] = base64.StdEncoding.EncodeToString([]byte("plain"))
			}),
			pods: &podTable{},
		},
		"does not patch a Running workflow and reads only its labels": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				wf["metadata"].(map[string]any)["labels"] = map[string]any{rules.LabelCompleted: "false", rules.LabelPhase: "Running"}
				wf["status"] = "not even an object: status is never read"
			}),
			pods: &podTable{},
		},
		"does not re-add a completed label that a retry removes": {
			object: stuckWorkflowObject(func(wf map[string]any) {
				wf["metadata"].(map[string]any)["labels"] = map[string]any{rules.LabelPhase: "Running"}
				status(wf)["phase"] = "Running"
			}),
			pods: &podTable{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.trs == nil {
				tc.trs = storedTaskResult12985()
			}
			tc.opts.Pods, tc.opts.TaskResults, tc.opts.Log = tc.pods, tc.trs, testr.New(t)
			h := NewWorkflowHandler(tc.opts)
			old := stuckWorkflowObject(nil)
			wantList := 0
			if tc.wantRead > 0 {
				wantList = 1
			}
			code, resp := serveReview(t, h, reviewJSON(t, "Workflow", rules.OperationUpdate, tc.object, old))
			assert.Equal(t, http.StatusOK, code)
			want := tc.want
			// JSON round trip of expected values, so maps and slices compare as decoded JSON.
			raw, err := json.Marshal(want)
			require.NoError(t, err)
			want = nil
			require.NoError(t, json.Unmarshal(raw, &want))
			sort.Slice(want, func(i, j int) bool { return want[i].Path < want[j].Path })
			assert.Equal(t, want, patchOf(t, resp))
			assert.Equal(t, tc.wantLook, tc.pods.calls, "pod lookups")
			assert.Equal(t, tc.wantRead, tc.trs.calls, "task-result reads")
			if tc.wantRead > 0 || tc.want != nil {
				assert.Equal(t, wantList, tc.trs.lists, "task-result lists")
			}
		})
	}
}

func TestWorkflowHandlerBoundsGzipBombs(t *testing.T) {
	// 80 MiB of zeros compresses to ~80 KiB: more than maxNodesBytes once inflated.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(bytes.Repeat([]byte{'0'}, 80<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	_, err = decompressNodes(base64.StdEncoding.EncodeToString(buf.Bytes()))
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "more than"), err.Error())
}

func TestLabelOperationsAddsWholeMapWhenLabelsAbsent(t *testing.T) {
	ops := labelOperations(nil, map[string]string{rules.LabelReportOutputsCompleted: "true"})
	assert.Equal(t, []jsonpatch.Operation{{Operation: "add", Path: "/metadata/labels",
		Value: map[string]string{rules.LabelReportOutputsCompleted: "true"}}}, ops)
}

func TestEscapePointer(t *testing.T) {
	assert.Equal(t, "workflows.argoproj.io~1completed", escapePointer("workflows.argoproj.io/completed"))
	assert.Equal(t, "a~0b~1c", escapePointer("a~b/c"))
	assert.Equal(t, "~01", escapePointer("~1"), "~ is escaped before /, so ~1 never decodes to /")
}

// A request from a namespace outside --namespaces is decided at once: no patch, no lookup error
// counted, no error logged.
func TestHandlersDecideUnwatchedNamespacesWithoutAnError(t *testing.T) {
	counters := ownCounters(t)
	pods := &podTable{err: fmt.Errorf("%w: argo", ErrNamespaceNotWatched)}
	h := NewTaskResultHandler(HandlerOptions{Pods: pods, Log: testr.New(t), Counters: counters})
	code, resp := serveReview(t, h, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, resp.Allowed)
	assert.Nil(t, resp.Patch)
	assert.Equal(t, 1, pods.calls)
	assert.Zero(t, testutil.ToFloat64(counters.lookupErrors), "not counted as a lookup error")
}
