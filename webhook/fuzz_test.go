package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// fuzzSeeds are the committed seed corpus: valid reviews of every shape the rules act on, and
// broken ones.
func fuzzSeeds(t testing.TB) [][]byte {
	valid := func(kind, op string, obj, old any) []byte {
		req := map[string]any{"uid": "u", "kind": map[string]string{"group": "argoproj.io", "version": "v1alpha1", "kind": kind},
			"namespace": "argo", "name": "wf-3571860313", "operation": op, "userInfo": map[string]any{"username": controllerSA}, "object": obj}
		if old != nil {
			req["oldObject"] = old
		}
		b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	compressed := stuckWorkflowObject(func(wf map[string]any) {
		raw, _ := json.Marshal(status(wf)["nodes"])
		var buf bytes.Buffer
		zw := gzipWriter(&buf)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		status(wf)["compressedNodes"] = base64Encode(buf.Bytes())
		delete(status(wf), "nodes")
	})
	return [][]byte{
		valid("WorkflowTaskResult", rules.OperationCreate, taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil),
		valid("WorkflowTaskResult", rules.OperationCreate, taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf"}), nil),
		valid("WorkflowTaskResult", rules.OperationUpdate, taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false", "a~b/c": "x"}), map[string]any{"metadata": map[string]any{}}),
		valid("Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil)),
		valid("Workflow", rules.OperationUpdate, compressed, nil),
		valid("Workflow", rules.OperationUpdate, stuckWorkflowObject(func(wf map[string]any) { delete(status(wf), "conditions") }), nil),
		// As kube-apiserver orders them: settled by the labels, before the rest is read.
		benchReviewOp("Workflow", rules.OperationUpdate, stuckWorkflowObject(func(wf map[string]any) {
			wf["metadata"].(map[string]any)["labels"].(map[string]any)[rules.LabelPhase] = "Running"
		}), stuckWorkflowObject(nil)),
		benchReviewOp("Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil)),
		benchReviewOp("WorkflowTaskResult", rules.OperationUpdate, taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "true"}), map[string]any{}),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"metadata":{"labels":null},"outputs":null}}}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v"}}`),
		[]byte(`{"a":[1,2,{"b":"\"\\"}]}`),
		[]byte(`not json`),
	}
}

// checkResponse asserts the properties every answer must have, for any input: a valid
// admission.k8s.io/v1 AdmissionReview that allows; the request's uid; patches only on our labels
// (or, B2 only, three status fields); the patch applies to the object, changes nothing else,
// never turns "true" into "false" nor removes a label; and the patched object decides nothing.
func checkResponse(t *testing.T, h http.Handler, body []byte, depth int) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, rec.Body.String())
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || !out.Response.Allowed {
		t.Fatalf("not an allowing AdmissionReview: %s", rec.Body.String())
	}
	rv, err := scanReview(body, nil)
	if rec.Code != http.StatusOK {
		if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", rec.Code)
		}
		if out.Response.Result == nil || out.Response.Result.Message == "" {
			t.Fatal("an error without a message")
		}
		return
	}
	// A request settled before the end of its body (by its labels, mostly) is answered without a
	// patch and with the uid read before it settled.
	early, _ := scanReview(body, h.(*handler).reader())
	settled := early != nil && early.Request != nil && early.Request.settled != nil
	if settled && out.Response.Patch != nil {
		t.Fatalf("settled before the end of the body, yet patched: %s", rec.Body.String())
	}
	if !json.Valid(body) {
		// A patch is built only once the whole body has been read, and the reader validates
		// what it reads and skips as json.Valid does; an invalid body may be answered without a
		// patch when it settled before the invalid part.
		if out.Response.Patch != nil || !settled {
			t.Fatalf("an invalid body was answered 200 although it did not settle early: %s", rec.Body.String())
		}
		return
	}
	want := ""
	switch {
	case settled:
		want = early.Request.UID
	case err == nil && rv.Request != nil:
		want = rv.Request.UID
	default:
		t.Fatalf("a valid body answered 200 does not read as a review: %v", err)
	}
	if string(out.Response.UID) != jsonRoundTrip(want) {
		t.Fatalf("uid %q does not echo the request's %q", out.Response.UID, want)
	}
	if out.Response.Patch == nil {
		return
	}
	var ops []map[string]any
	if err := json.Unmarshal(out.Response.Patch, &ops); err != nil {
		t.Fatalf("patch is not JSON: %v", err)
	}
	for _, op := range ops {
		path, _ := op["path"].(string)
		allowed := path == "/metadata/labels" ||
			path == "/metadata/labels/"+escapePointer(rules.LabelReportOutputsCompleted) ||
			path == "/metadata/labels/"+escapePointer(rules.LabelCompleted) ||
			path == "/metadata/labels/"+escapePointer(rules.LabelArchivingStatus) ||
			path == "/status/finishedAt" || strings.HasPrefix(path, "/status/conditions") ||
			strings.HasPrefix(path, "/status/taskResultsCompletionStatus/")
		if !allowed || (op["op"] != "add" && op["op"] != "replace") {
			t.Fatalf("operation outside the two labels' reach: %v", op)
		}
	}
	patch, err := jsonpatch5.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v", err)
	}
	patched, err := patch.Apply(rv.Request.Object)
	if err != nil {
		t.Fatalf("patch does not apply to the object: %v", err)
	}
	var before, after map[string]any
	_ = json.Unmarshal(rv.Request.Object, &before)
	if err := json.Unmarshal(patched, &after); err != nil {
		t.Fatalf("patched object is not JSON: %v", err)
	}
	bl, _ := before["metadata"].(map[string]any)["labels"].(map[string]any)
	al, _ := after["metadata"].(map[string]any)["labels"].(map[string]any)
	for k, v := range bl {
		if _, ok := al[k]; !ok {
			t.Fatalf("label %s removed", k)
		}
		if v == "true" && al[k] != "true" {
			t.Fatalf("label %s turned from true to %v", k, al[k])
		}
	}
	// Everything but labels and the three status fields is unchanged.
	for _, m := range []map[string]any{before, after} {
		delete(m["metadata"].(map[string]any), "labels")
		if st, ok := m["status"].(map[string]any); ok {
			delete(st, "finishedAt")
			delete(st, "conditions")
			delete(st, "taskResultsCompletionStatus")
		}
	}
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if !bytes.Equal(b1, b2) {
		t.Fatalf("the patch changed more than the labels:\n%s\n%s", b1, b2)
	}
	if depth == 0 {
		// Idempotence: the patched object, sent again, gets no patch.
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		var obj any
		_ = json.Unmarshal(patched, &obj)
		doc["request"].(map[string]any)["object"] = obj
		again, _ := json.Marshal(doc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(again)))
		var second admissionv1.AdmissionReview
		_ = json.Unmarshal(rec.Body.Bytes(), &second)
		if second.Response == nil || second.Response.Patch != nil {
			t.Fatalf("not idempotent: the patched object got another patch: %s", rec.Body.String())
		}
	}
}

func fuzzHandlers() (http.Handler, http.Handler) {
	pods := &podTable{pods: map[string]*rules.Pod{"argo/wf/wf-3571860313": resourcePod()}}
	opts := HandlerOptions{Pods: pods, Log: logr.Discard()}
	return NewTaskResultHandler(opts), NewWorkflowHandler(HandlerOptions{Pods: &podTable{}, TaskResults: storedTaskResult12985(), Log: logr.Discard()})
}

func FuzzTaskResultHandler(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	tr, _ := fuzzHandlers()
	f.Fuzz(func(t *testing.T, body []byte) { checkResponse(t, tr, body, 0) })
}

func FuzzWorkflowHandler(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	_, wf := fuzzHandlers()
	f.Fuzz(func(t *testing.T, body []byte) { checkResponse(t, wf, body, 0) })
}

// The seeds run as ordinary tests too: the patching ones must actually patch, so the properties
// above are exercised on real patches, not only on refusals.
func TestFuzzSeedsPatch(t *testing.T) {
	tr, wf := fuzzHandlers()
	patched := 0
	for _, s := range fuzzSeeds(t) {
		for _, h := range []http.Handler{tr, wf} {
			checkResponse(t, h, s, 0)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(s)))
			if bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
				patched++
			}
		}
	}
	if patched < 5 {
		t.Fatalf("only %d seeds patch", patched)
	}
}

// jsonRoundTrip is s as it reads back from JSON output: encoding/json replaces each byte of
// invalid UTF-8 (which json.Valid lets through) with U+FFFD.
func jsonRoundTrip(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
