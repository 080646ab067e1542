package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// Mode says whether decisions are applied.
type Mode string

const (
	// ModeEnforce applies decisions as JSON patches.
	ModeEnforce Mode = "enforce"
	// ModeAudit applies nothing and returns each decision as an AdmissionResponse warning.
	ModeAudit Mode = "audit"
)

// The endpoints, as controller-runtime names mutating webhook paths.
const (
	TaskResultPath = "/mutate-argoproj-io-v1alpha1-workflowtaskresult"
	WorkflowPath   = "/mutate-argoproj-io-v1alpha1-workflow"
)

// PodLookup finds the pod that runs a node.
type PodLookup interface {
	// PodForNode returns the pod of workflow wf in namespace whose node-id annotation is nodeID,
	// or nil and no error when there is none.
	PodForNode(ctx context.Context, namespace, workflow, nodeID string) (*rules.Pod, error)
}

// HandlerOptions configure the admission handlers.
type HandlerOptions struct {
	// Pods looks up the pod of a node.
	Pods PodLookup
	// Mode is enforce (default) or audit.
	Mode Mode
	// TaskResults reads the incomplete entries' task results for rule B2; nil makes B2 decline.
	TaskResults TaskResultReader
	// Workflow configures rule B2.
	Workflow rules.WorkflowConfig
	// Now is the clock of rule B2's grace; nil means time.Now.
	Now func() time.Time
	// Events, when set, gets every mutating decision (or, in audit mode, every one it would
	// apply) as an Event on the Workflow. Never called for dry-run requests.
	Events Recorder
	// LookupTimeout bounds each request's pod lookups; it must stay well under the webhook's
	// timeoutSeconds (2 s) so a slow API server never turns into a webhook timeout.
	LookupTimeout time.Duration
	// Log receives one line per mutation (and, at V(1), per request).
	Log logr.Logger
	// Counters are the argo_completion_webhook_* metrics the handlers count into; nil means the
	// process's, in controller-runtime's registry.
	Counters *Counters
}

func (o *HandlerOptions) setDefaults() {
	if o.Mode == "" {
		o.Mode = ModeEnforce
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 750 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Counters == nil {
		o.Counters = processCounters
	}
}

// handler serves one admission endpoint; decide reads the request and returns the decision and
// the patch that applies it.
type handler struct {
	kind string
	opts HandlerOptions
	// reader returns a new reader of request.object for one request; decide decides with it.
	reader func() objectReader
	decide func(ctx context.Context, req *reviewRequest, obj objectReader) (outcome, error)
}

// outcome is a decision with the operations that apply it, and what its Event is about.
type outcome struct {
	rules.Decision
	ops      []jsonpatch.Operation
	workflow WorkflowRef
	nodeID   string
}

var _ http.Handler = (*handler)(nil)

// NewTaskResultHandler returns the handler for WorkflowTaskResult CREATE and UPDATE reviews
// (rules A0–A2).
func NewTaskResultHandler(opts HandlerOptions) http.Handler {
	opts.setDefaults()
	h := &handler{kind: "taskresult", opts: opts, reader: func() objectReader { return &taskResultReader{} }}
	h.decide = func(ctx context.Context, req *reviewRequest, obj objectReader) (outcome, error) {
		return h.decideTaskResult(ctx, req, obj.(*taskResultReader))
	}
	return h
}

// NewWorkflowHandler returns the handler for Workflow UPDATE reviews (rules B0–B2).
func NewWorkflowHandler(opts HandlerOptions) http.Handler {
	opts.setDefaults()
	h := &handler{kind: "workflow", opts: opts, reader: func() objectReader { return &workflowReader{cfg: opts.Workflow} }}
	h.decide = func(ctx context.Context, req *reviewRequest, obj objectReader) (outcome, error) {
		return h.decideWorkflow(ctx, req, obj.(*workflowReader))
	}
	return h
}

// ServeHTTP answers one AdmissionReview. It never denies: what it cannot decide is allowed
// unpatched; an unreadable review gets HTTP 400 (413 when too large) naming what was wrong.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := getBuffer()
	defer putBuffer(buf)
	body, err := readBody(w, r, buf)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.fail(w, http.StatusRequestEntityTooLarge, "", fmt.Errorf("body larger than %d bytes", maxBodyBytes))
			return
		}
		h.fail(w, http.StatusBadRequest, "", fmt.Errorf("reading body: %w", err))
		return
	}
	obj := h.reader()
	defer obj.release()
	rv, err := decodeReview(body, obj)
	if err != nil {
		uid := ""
		if rv != nil && rv.Request != nil {
			uid = rv.Request.UID
		}
		h.fail(w, http.StatusBadRequest, uid, err)
		return
	}
	req := rv.Request
	var out outcome
	if req.settled != nil {
		// Decided by what was read before the end of the body (the labels, mostly), and
		// nothing to patch: the rest of the body is not read.
		out.Decision = *req.settled
	} else if out, err = h.decide(r.Context(), req, obj); err != nil {
		h.fail(w, http.StatusBadRequest, req.UID, err)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: types.UID(req.UID), Allowed: true}
	rule := out.Rule
	if rule == "" {
		rule = "none"
	}
	h.opts.Counters.decisions.WithLabelValues(h.kind, rule, string(h.opts.Mode)).Inc()
	// The request's log context is built only when a line is written: most requests log nothing.
	log := func() logr.Logger {
		return h.opts.Log.WithValues("requestID", req.UID, "namespace", req.Namespace, "name", req.Name, "operation", req.Operation)
	}
	switch {
	case len(out.ops) == 0:
		if h.opts.Log.V(1).Enabled() {
			log().V(1).Info("no change", "reason", out.Reason)
		}
	case h.opts.Mode == ModeAudit:
		patch := describe(out.ops)
		resp.Warnings = []string{fmt.Sprintf("argo-completion-webhook audit mode: would set %s (rule %s: %s)", patch, out.Rule, out.Reason)}
		log().Info("audit: would patch", "rule", out.Rule, "reason", out.Reason, "patch", patch)
	default:
		patch, err := json.Marshal(out.ops)
		if err != nil { // cannot happen for strings, bools and slices of them
			h.fail(w, http.StatusInternalServerError, req.UID, fmt.Errorf("encoding patch: %w", err))
			return
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		log().Info("patched", "rule", out.Rule, "reason", out.Reason, "patch", describe(out.ops), "dryRun", req.DryRun != nil && *req.DryRun)
	}
	if len(out.ops) > 0 && h.opts.Events != nil && (req.DryRun == nil || !*req.DryRun) {
		// Asynchronous: queued for another goroutine (sideEffects: NoneOnDryRun).
		result := "dropped"
		if h.opts.Events.Record(out.workflow, out.Decision, h.opts.Mode == ModeAudit, out.nodeID) {
			result = "queued"
		}
		h.opts.Counters.events.WithLabelValues(result).Inc()
	}
	h.write(w, http.StatusOK, resp)
}

// decideTaskResult decides a WorkflowTaskResult request from what t read, looking up its pod
// only when the pod-independent checks pass.
func (h *handler) decideTaskResult(ctx context.Context, req *reviewRequest, t *taskResultReader) (outcome, error) {
	req.seenKind, req.seenOperation = true, true // the whole review has been read
	if d, ok := taskResultRequestCheck(req); !ok {
		return outcome{Decision: d}, nil
	}
	tr, err := t.taskResult(req)
	if err != nil {
		return outcome{}, err
	}
	if d, ok := rules.PrecheckTaskResult(tr); !ok {
		return outcome{Decision: d}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, h.opts.LookupTimeout)
	defer cancel()
	pod, err := h.opts.Pods.PodForNode(lctx, req.Namespace, tr.Workflow(), tr.Name)
	if err != nil {
		return h.lookupFailed(req, tr.Name, "pod", err), nil
	}
	d := rules.DecideTaskResult(tr, pod)
	return outcome{Decision: d, ops: labelOperations(tr.Labels, d.Set),
		workflow: WorkflowRef{Namespace: req.Namespace, Name: tr.Workflow(), UID: tr.OwnerWorkflowUID}, nodeID: tr.Name}, nil
}

// decideWorkflow decides a Workflow request from what w read, in stages (labels, then status,
// then pods, then task results), stopping at the first stage that decides.
func (h *handler) decideWorkflow(ctx context.Context, req *reviewRequest, w *workflowReader) (outcome, error) {
	req.seenKind, req.seenOperation = true, true // the whole review has been read
	if d, ok := workflowRequestCheck(req); !ok {
		return outcome{Decision: d}, nil
	}
	wf, err := w.head(req)
	if err != nil {
		return outcome{}, err
	}
	cfg := h.opts.Workflow
	if d, ok := rules.PrecheckWorkflowLabels(wf, cfg); !ok {
		return outcome{Decision: d}, nil
	}
	if err := w.withStatus(&wf); err != nil {
		return outcome{}, err
	}
	if wf.NodesUnreadable != "" {
		h.opts.Log.Info("cannot read workflow nodes; allowing unpatched", "requestID", req.UID, "namespace", req.Namespace, "name", req.Name, "why", wf.NodesUnreadable)
	}
	d, incomplete, ok := rules.PrecheckWorkflow(wf, cfg)
	if !ok {
		return outcome{Decision: d}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, h.opts.LookupTimeout)
	defer cancel()
	facts := rules.WorkflowFacts{Now: h.opts.Now(), Pods: make(map[string]*rules.Pod, len(incomplete)), TaskResults: make(map[string]*rules.StoredTaskResult, len(incomplete))}
	for _, id := range incomplete {
		pod, err := h.opts.Pods.PodForNode(lctx, req.Namespace, w.name, id)
		if err != nil {
			return h.lookupFailed(req, id, "pod", err), nil
		}
		facts.Pods[id] = pod
	}
	if d, ok := rules.CheckWorkflowPods(wf, cfg, incomplete, facts.Pods, facts.Now); !ok {
		return outcome{Decision: d}, nil
	}
	// Only now, with every executor long terminated, read the task results themselves: the
	// API server may hold outputs the controller has not merged into the nodes yet.
	if h.opts.TaskResults == nil {
		return outcome{Decision: rules.NoDecision("no task-result reader configured")}, nil
	}
	if facts.Listed, err = h.opts.TaskResults.TaskResultNames(lctx, req.Namespace, w.name); err != nil {
		return h.lookupFailed(req, "", "task-result list", err), nil
	}
	for _, id := range incomplete {
		tr, err := h.opts.TaskResults.StoredTaskResult(lctx, req.Namespace, id)
		if err != nil {
			return h.lookupFailed(req, id, "task result", err), nil
		}
		facts.TaskResults[id] = tr
	}
	d = rules.FinishWorkflow(wf, cfg, incomplete, facts)
	if !d.Mutates() {
		return outcome{Decision: d}, nil
	}
	ops := append(labelOperations(wf.Labels, d.Set), statusOperations(&w.status, d.Status)...)
	return outcome{Decision: d, ops: ops, workflow: WorkflowRef{Namespace: req.Namespace, Name: w.name, UID: w.uid}}, nil
}

// lookupFailed counts and logs a failed read of a node's pod or task result, and decides to
// allow the write unpatched: without the fact, no rule may act.
func (h *handler) lookupFailed(req *reviewRequest, nodeID, what string, err error) outcome {
	if errors.Is(err, ErrNamespaceNotWatched) {
		// Configured scope (--namespaces), not a failure: no error line, no error count.
		return outcome{Decision: rules.NoDecision("namespace not watched (--namespaces)")}
	}
	h.opts.Counters.lookupErrors.Inc()
	h.opts.Log.Error(err, what+" lookup failed; allowing unpatched", "requestID", req.UID, "namespace", req.Namespace, "nodeID", nodeID)
	return outcome{Decision: rules.NoDecision(what + " lookup failed: " + err.Error())}
}

// fail answers with an HTTP error status and an AdmissionReview whose result says what was wrong.
// The API server treats the call as failed and, with failurePolicy Ignore, admits the write. code
// is an int32, metav1.Status.Code's type, so it reaches the result unconverted.
func (h *handler) fail(w http.ResponseWriter, code int32, uid string, err error) {
	h.opts.Counters.badRequests.Inc()
	h.opts.Log.Info("bad admission request", "code", code, "requestID", uid, "error", err.Error())
	h.write(w, int(code), &admissionv1.AdmissionResponse{
		UID:     types.UID(uid),
		Allowed: true,
		Result:  &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: err.Error()},
	})
}

// write sends resp inside an admission.k8s.io/v1 AdmissionReview.
func (h *handler) write(w http.ResponseWriter, code int, resp *admissionv1.AdmissionResponse) {
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		h.opts.Log.V(1).Info("writing response failed", "error", err.Error())
	}
}

// describe renders operations as "path=value, ..." for logs and warnings.
func describe(ops []jsonpatch.Operation) string {
	s := ""
	for i, op := range ops {
		if i > 0 {
			s += ", "
		}
		v, _ := json.Marshal(op.Value)
		s += op.Path + "=" + string(v)
	}
	return s
}

// bodyPool recycles request buffers: a 2 MiB Workflow review read with io.ReadAll would allocate
// and zero about twice its size on every request.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func getBuffer() *[]byte { return bodyPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= maxBodyBytes+1 {
		*b = (*b)[:0]
		bodyPool.Put(b)
	}
}

// readBody reads the request body (at most maxBodyBytes) into buf, growing it once to the
// declared Content-Length when there is one.
func readBody(w http.ResponseWriter, r *http.Request, buf *[]byte) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	b := (*buf)[:0]
	if n := r.ContentLength; n > 0 && n <= maxBodyBytes && int(n) > cap(b) {
		b = make([]byte, 0, n+1) // +1: the read that finds EOF needs room
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return b, nil
		}
		if err != nil {
			*buf = b
			return nil, err
		}
	}
}
