package webhook

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// maxBodyBytes caps an AdmissionReview body. It is controller-runtime's own cap for admission
// webhooks: a review holds object and oldObject, each up to etcd's ~1.5 MiB request limit, plus
// the request's envelope, so no legitimate review comes close.
const maxBodyBytes = 7 << 20

// review is the part of an admission.k8s.io/v1 AdmissionReview the handlers read.
type review struct {
	APIVersion string
	Kind       string
	Request    *reviewRequest
}

// reviewRequest is the part of an AdmissionRequest the handlers read.
type reviewRequest struct {
	UID  string
	Kind struct {
		Group   string
		Version string
		Kind    string
	}
	Namespace string
	Name      string
	Operation string
	UserInfo  struct {
		Username string
		Extra    map[string][]string
	}
	DryRun *bool
	// Object and OldObject are raw sub-slices of the body; Object is nil when the request was
	// settled before the object had been read to its end.
	Object    json.RawMessage
	OldObject json.RawMessage

	// seenKind, seenOperation and seenUserInfo say which of those fields the pass has read.
	seenKind, seenOperation, seenUserInfo bool
	// objectErr is why the handler's object reader could not read the object (kept until the
	// kind and operation say the object matters, as the rules ask for it only then).
	objectErr error
	// settled is the decision reached before the whole body was read; it never patches.
	settled *rules.Decision
}

// objectReader reads request.object in place during the one pass over the review, so that a
// large object is read once, and says when what has been read already settles the request: a
// final decision that patches nothing, which needs no more of the body (an allowed response
// without a patch changes nothing, exactly what failurePolicy: Ignore does when the webhook is
// down). A response with a patch is only ever built after the whole body has been read.
type objectReader interface {
	// read reads the object value at rs.s.pos. It returns errSettled, unchanged, from rs.check.
	read(rs *reviewScan) error
	// settle returns the final decision when what has been read of the request and the object
	// already decides that nothing is patched, whatever the rest of the body holds.
	settle(req *reviewRequest) (rules.Decision, bool)
	// release frees what the reader pooled, once the request is decided.
	release()
}

// errSettled ends the pass over a review once its answer is known and patches nothing.
var errSettled = errors.New("settled")

// reviewScan is the state of the one pass over a review.
type reviewScan struct {
	s   *scanner
	r   review
	obj objectReader // nil: object is only skipped
	// seenAPIVersion, seenKind and seenUID: the fields the answer needs besides a decision.
	seenAPIVersion, seenKind, seenUID bool
	settled                           *rules.Decision
}

// check settles the request when the object reader says what has been read decides it, and ends
// the pass (errSettled) once the review's apiVersion, kind and uid have been read too: the
// answer needs those. Until then the pass goes on, skipping all but those fields.
func (rs *reviewScan) check() error {
	if rs.settled == nil && rs.obj != nil && rs.r.Request != nil {
		if d, ok := rs.obj.settle(rs.r.Request); ok {
			rs.settled = &d
		}
	}
	if rs.settled != nil && rs.seenAPIVersion && rs.seenKind && rs.seenUID {
		return errSettled
	}
	return nil
}

// decodeReview reads an AdmissionReview in one pass, reading request.object with obj (nil: keep
// it raw) and keeping oldObject as a raw sub-slice of body. It stops early when obj settles the
// request (Request.settled). Its errors name what was wrong.
func decodeReview(body []byte, obj objectReader) (*review, error) {
	r, err := scanReview(body, obj)
	if err != nil {
		return nil, fmt.Errorf("body is not an AdmissionReview: %w", err)
	}
	switch {
	case r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview":
		return r, fmt.Errorf("expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got %q %q", r.APIVersion, r.Kind)
	case r.Request == nil:
		return r, errors.New("AdmissionReview has no request")
	case r.Request.UID == "":
		return r, errors.New("AdmissionReview request has no uid")
	}
	return r, nil
}

func scanReview(body []byte, obj objectReader) (*review, error) {
	rs := &reviewScan{s: &scanner{data: body}, obj: obj}
	s, r := rs.s, &rs.r
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "apiVersion":
			r.APIVersion, err = s.str()
			rs.seenAPIVersion = true
		case "kind":
			r.Kind, err = s.str()
			rs.seenKind = true
		case "request":
			if s.peek() == 'n' {
				return s.literal("null")
			}
			r.Request = &reviewRequest{}
			err = rs.request()
		default:
			_, err = s.skip()
		}
		if err == nil {
			err = rs.check()
		}
		return err
	})
	if errors.Is(err, errSettled) {
		r.Request.settled = rs.settled
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	return r, s.end()
}

// request reads the AdmissionRequest at s.pos.
func (rs *reviewScan) request() error {
	s, req := rs.s, rs.r.Request
	return s.object(func(key []byte) error {
		var err error
		if rs.settled != nil && string(key) != "uid" {
			// Settled: only the uid is still wanted.
			_, err = s.skip()
			return err
		}
		switch string(key) {
		case "uid":
			req.UID, err = s.str()
			rs.seenUID = true
		case "kind":
			req.seenKind = true
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "group":
					req.Kind.Group, err = s.str()
				case "version":
					req.Kind.Version, err = s.str()
				case "kind":
					req.Kind.Kind, err = s.str()
				default:
					_, err = s.skip()
				}
				return err
			})
		case "namespace":
			req.Namespace, err = s.str()
		case "name":
			req.Name, err = s.str()
		case "operation":
			req.Operation, err = s.str()
			req.seenOperation = true
		case "userInfo":
			req.seenUserInfo = true
			err = scanUserInfo(s, req)
		case "dryRun":
			var v, ok bool
			v, ok, err = s.boolean()
			if ok {
				req.DryRun = &v
			}
		case "object":
			err = rs.object()
		case "oldObject":
			req.OldObject, err = s.skip()
		default:
			_, err = s.skip()
		}
		if err == nil {
			err = rs.check()
		}
		return err
	})
}

// object reads request.object with the object reader, or keeps it raw.
func (rs *reviewScan) object() error {
	s, req := rs.s, rs.r.Request
	begin := s.pos
	if rs.obj == nil {
		var err error
		req.Object, err = s.skip()
		return err
	}
	req.objectErr = nil
	if err := rs.obj.read(rs); err != nil {
		if errors.Is(err, errSettled) {
			return err
		}
		// Not an object the handler can read (a label value that is not a string, ...): an
		// error once the kind and operation say the object matters. The body must still be
		// well-formed, so the value is read again, skipped.
		s.pos = begin
		if _, serr := s.skip(); serr != nil {
			return serr
		}
		req.objectErr = err
	}
	if rs.settled == nil {
		req.Object = bytes.TrimSpace(s.data[begin:s.pos])
	}
	return nil
}

func scanUserInfo(s *scanner, req *reviewRequest) error {
	return s.object(func(k []byte) error {
		switch string(k) {
		case "username":
			var err error
			req.UserInfo.Username, err = s.str()
			return err
		case "extra":
			return s.object(func(extra []byte) error {
				if string(extra) != rules.ExtraPodName {
					_, err := s.skip()
					return err
				}
				var values []string
				err := s.array(func() error {
					v, err := s.str()
					values = append(values, v)
					return err
				})
				req.UserInfo.Extra = map[string][]string{rules.ExtraPodName: values}
				return err
			})
		}
		_, err := s.skip()
		return err
	})
}

// writerPod returns the pod name a bound service-account token names, or "".
func (r *reviewRequest) writerPod() string {
	if v := r.UserInfo.Extra[rules.ExtraPodName]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// taskResultReader reads what the A rules read of a WorkflowTaskResult object: metadata.name,
// labels, the Workflow owner's UID and the raw outputs.
type taskResultReader struct {
	tr         rules.TaskResult
	labelsRead bool // metadata.labels has been read
	objectRead bool // the whole object has been read
}

var _ objectReader = (*taskResultReader)(nil)

func (t *taskResultReader) read(rs *reviewScan) error {
	s := rs.s
	t.tr, t.labelsRead, t.objectRead = rules.TaskResult{}, false, false
	err := s.object(func(key []byte) error {
		var err error
		if rs.settled != nil {
			_, err = s.skip()
			return err
		}
		switch string(key) {
		case "metadata":
			err = s.object(func(k []byte) error {
				var err error
				if rs.settled != nil {
					_, err = s.skip()
					return err
				}
				switch string(k) {
				case "name":
					t.tr.Name, err = s.str()
				case "labels":
					if t.tr.Labels, err = s.stringMap(); err == nil {
						t.labelsRead = true
						err = rs.check()
					}
				case "ownerReferences":
					err = s.array(func() error {
						var apiVersion, kind, uid string
						err := s.object(func(f []byte) error {
							var err error
							switch string(f) {
							case "apiVersion":
								apiVersion, err = s.str()
							case "kind":
								kind, err = s.str()
							case "uid":
								uid, err = s.str()
							default:
								_, err = s.skip()
							}
							return err
						})
						if kind == "Workflow" && strings.HasPrefix(apiVersion, "argoproj.io/") {
							t.tr.OwnerWorkflowUID = uid
						}
						return err
					})
				default:
					_, err = s.skip()
				}
				return err
			})
		case "outputs":
			t.tr.Outputs, err = s.skip()
		default:
			_, err = s.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	t.tr.Outputs = present(t.tr.Outputs)
	t.objectRead = true
	return rs.check()
}

func (t *taskResultReader) release() {}

// settle decides a task result request before the rest of the body is read when its kind, its
// operation or its labels (and, once the object is read, its outputs) already fail the A rules'
// prechecks. What has not been read yet stands in with a value that passes its own check, so a
// failing precheck fails on what has been read, and stays failed whatever follows: the operation
// is CREATE, the outputs are present and oldObject's are unknown (nil: "unchanged" needs them).
func (t *taskResultReader) settle(req *reviewRequest) (rules.Decision, bool) {
	if d, ok := taskResultRequestCheck(req); !ok {
		return d, true
	}
	if !t.labelsRead || req.objectErr != nil {
		return rules.Decision{}, false
	}
	tr := rules.TaskResult{Operation: rules.OperationCreate, Labels: t.tr.Labels, Outputs: json.RawMessage(`{}`)}
	if req.seenOperation {
		tr.Operation = req.Operation
	}
	if t.objectRead {
		tr.Outputs = t.tr.Outputs
	}
	d, ok := rules.PrecheckTaskResult(tr)
	return d, !ok
}

// taskResultRequestCheck decides the requests the A rules never read the object of: another
// kind, another operation (once read).
func taskResultRequestCheck(req *reviewRequest) (rules.Decision, bool) {
	switch {
	case req.seenKind && (req.Kind.Group != "argoproj.io" || req.Kind.Kind != "WorkflowTaskResult"):
		return rules.NoDecision("not a WorkflowTaskResult: " + req.Kind.Group + "/" + req.Kind.Kind), false
	case req.seenOperation && req.Operation != rules.OperationCreate && req.Operation != rules.OperationUpdate:
		return rules.NoDecision("operation " + req.Operation + " is never mutated"), false
	}
	return rules.Decision{}, true
}

// taskResult builds the rule input from what the reader read and the request (the writer, and
// oldObject's outputs on UPDATE).
func (t *taskResultReader) taskResult(req *reviewRequest) (rules.TaskResult, error) {
	if req.objectErr != nil {
		return rules.TaskResult{}, fmt.Errorf("request.object is not a WorkflowTaskResult: %w", req.objectErr)
	}
	if !t.objectRead {
		return rules.TaskResult{}, errors.New("request has no object")
	}
	tr := t.tr
	tr.Operation, tr.WriterPod = req.Operation, req.writerPod()
	if tr.Name == "" {
		tr.Name = req.Name
	}
	if req.Operation == rules.OperationUpdate && len(present(req.OldObject)) > 0 {
		old := &scanner{data: req.OldObject}
		err := old.object(func(key []byte) error {
			var err error
			if string(key) == "outputs" {
				tr.OldOutputs, err = old.skip()
			} else {
				_, err = old.skip()
			}
			return err
		})
		if err != nil {
			return rules.TaskResult{}, fmt.Errorf("request.oldObject is not a WorkflowTaskResult: %w", err)
		}
		tr.OldOutputs = present(tr.OldOutputs)
	}
	return tr, nil
}

// present returns raw, or nil when it is absent or JSON null.
func present(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// workflowReader reads what rule B2 reads of a Workflow object: metadata's name, uid, labels
// and finalizers, and of status the phase, finishedAt, conditions, taskResultsCompletionStatus
// and the nodes, which it streams: each node is folded into a rules.NodeSummary and only its
// position is kept, so the few nodes of incomplete entries can be read again (nodeSet).
type workflowReader struct {
	cfg        rules.WorkflowConfig
	name, uid  string
	labels     map[string]string
	finalizers []string
	labelsRead bool // metadata.labels has been read
	objectRead bool // the whole object has been read

	phase, finishedAt string
	status            workflowStatus
	nodes             *nodeSet // status.nodes; nil when absent
	compressed        string   // status.compressedNodes
	offloaded         string   // status.offloadNodeStatusVersion
	completion        map[string]bool
	statusErr         error // why status could not be read; an error once the labels say it matters
}

var _ objectReader = (*workflowReader)(nil)

func (w *workflowReader) read(rs *reviewScan) error {
	s := rs.s
	w.nodes.release()
	*w = workflowReader{cfg: w.cfg}
	err := s.object(func(key []byte) error {
		var err error
		if rs.settled != nil {
			_, err = s.skip()
			return err
		}
		switch string(key) {
		case "metadata":
			err = s.object(func(k []byte) error {
				var err error
				if rs.settled != nil {
					_, err = s.skip()
					return err
				}
				switch string(k) {
				case "name":
					w.name, err = s.str()
				case "uid":
					w.uid, err = s.str()
				case "labels":
					if w.labels, err = s.stringMap(); err == nil {
						w.labelsRead = true
						err = rs.check()
					}
				case "finalizers":
					err = s.array(func() error {
						f, err := s.str()
						w.finalizers = append(w.finalizers, f)
						return err
					})
				default:
					_, err = s.skip()
				}
				return err
			})
		case "status":
			begin := s.pos
			if err := w.readStatus(s); err != nil {
				// Reported only if the labels leave the decision to the status, as before any
				// status is read; the body must still be well-formed.
				s.pos = begin
				if _, serr := s.skip(); serr != nil {
					return serr
				}
				w.statusErr = fmt.Errorf("request.object.status is not a Workflow status: %w", err)
			}
		default:
			_, err = s.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	w.objectRead = true
	return nil
}

func (w *workflowReader) release() { w.nodes.release() }

// settle decides a Workflow request before the rest of the body is read when its kind, its
// operation or its labels already fail rule B2's prechecks: what has not been read yet stands in
// with a value that passes its own check (the operation UPDATE, the writer the controller), so
// a failing check fails on what has been read and stays failed whatever follows.
func (w *workflowReader) settle(req *reviewRequest) (rules.Decision, bool) {
	if d, ok := workflowRequestCheck(req); !ok {
		return d, true
	}
	if !w.labelsRead || req.objectErr != nil {
		return rules.Decision{}, false
	}
	wf := rules.Workflow{Operation: rules.OperationUpdate, Labels: w.labels, Username: req.UserInfo.Username}
	if !req.seenUserInfo && len(w.cfg.ControllerUsernames) > 0 {
		wf.Username = w.cfg.ControllerUsernames[0]
	}
	d, ok := rules.PrecheckWorkflowLabels(wf, w.cfg)
	return d, !ok
}

// workflowRequestCheck decides the requests rule B2 never reads the object of: another kind,
// another operation (once read).
func workflowRequestCheck(req *reviewRequest) (rules.Decision, bool) {
	switch {
	case req.seenKind && (req.Kind.Group != "argoproj.io" || req.Kind.Kind != "Workflow"):
		return rules.NoDecision("not a Workflow: " + req.Kind.Group + "/" + req.Kind.Kind), false
	case req.seenOperation && req.Operation != rules.OperationUpdate:
		return rules.NoDecision("operation " + req.Operation + " is never mutated"), false
	}
	return rules.Decision{}, true
}

// head returns the rule input as far as the labels: what PrecheckWorkflowLabels reads.
func (w *workflowReader) head(req *reviewRequest) (rules.Workflow, error) {
	if req.objectErr != nil {
		return rules.Workflow{}, fmt.Errorf("request.object is not a Workflow: %w", req.objectErr)
	}
	if !w.objectRead {
		return rules.Workflow{}, errors.New("request has no object")
	}
	return rules.Workflow{Operation: req.Operation, Username: req.UserInfo.Username, UID: w.uid, Labels: w.labels, Finalizers: w.finalizers}, nil
}

// withStatus fills the rule input's status fields: the nodes' summary and, of the nodes, only
// those the incomplete entries name.
func (w *workflowReader) withStatus(wf *rules.Workflow) error {
	if w.statusErr != nil {
		return w.statusErr
	}
	wf.Phase, wf.FinishedAt, wf.TaskResultsCompletion = w.phase, w.finishedAt, w.completion
	nodes, why := w.nodeSet()
	if why != "" {
		wf.NodesUnreadable = why
		return nil
	}
	wf.Summary = &nodes.summary
	for id, done := range w.completion {
		if done {
			continue
		}
		n, ok, err := nodes.node(id)
		if err != nil {
			return fmt.Errorf("request.object.status is not a Workflow status: %w", err)
		}
		if ok {
			if wf.Nodes == nil {
				wf.Nodes = map[string]rules.Node{}
			}
			wf.Nodes[id] = n
		}
	}
	return nil
}

// nodeSet returns the nodes (decoding compressedNodes), or says why they cannot be read.
func (w *workflowReader) nodeSet() (*nodeSet, string) {
	switch {
	case w.offloaded != "":
		return nil, "offloaded to the persistence database (offloadNodeStatusVersion " + w.offloaded + ")"
	case w.compressed != "":
		nodes, err := decompressNodes(w.compressed)
		if err != nil {
			return nil, "compressedNodes: " + err.Error()
		}
		w.nodes.release()
		w.nodes = nodes
	case w.nodes == nil:
		w.nodes = &nodeSet{}
	}
	return w.nodes, w.nodes.unreadable()
}

// workflowStatus is what building rule B2's patch needs to know of the status: which keys exist
// and where the Completed condition is.
type workflowStatus struct {
	FinishedAt json.RawMessage // raw value; nil when the key is absent
	Conditions json.RawMessage // raw value; nil when the key is absent
	conditions []statusCondition
}

// statusCondition is one entry of status.conditions.
type statusCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// readStatus reads status at s.pos.
func (w *workflowReader) readStatus(s *scanner) error {
	w.nodes.release()
	w.phase, w.finishedAt, w.status, w.nodes, w.compressed, w.offloaded, w.completion, w.statusErr = "", "", workflowStatus{}, nil, "", "", nil, nil
	st := &w.status
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "phase":
			w.phase, _, err = s.nullableStr()
		case "finishedAt":
			begin := s.pos
			w.finishedAt, _, err = s.nullableStr()
			st.FinishedAt = bytes.TrimSpace(s.data[begin:s.pos])
		case "conditions":
			begin := s.pos
			st.conditions = nil
			err = s.array(func() error {
				var c statusCondition
				err := s.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "type":
						c.Type, err = s.str()
					case "status":
						c.Status, err = s.str()
					default:
						_, err = s.skip()
					}
					return err
				})
				st.conditions = append(st.conditions, c)
				return err
			})
			st.Conditions = bytes.TrimSpace(s.data[begin:s.pos])
		case "nodes":
			w.nodes.release()
			w.nodes, err = readNodes(s)
		case "compressedNodes":
			w.compressed, _, err = s.nullableStr()
		case "offloadNodeStatusVersion":
			w.offloaded, _, err = s.nullableStr()
		case "taskResultsCompletionStatus":
			err = s.object(func(k []byte) error {
				v, _, err := s.boolean()
				if w.completion == nil {
					// One entry per Pod node, mostly: sized once when the nodes came first.
					hint := 0
					if w.nodes != nil {
						hint = len(w.nodes.refs)
					}
					w.completion = make(map[string]bool, hint)
				}
				w.completion[string(k)] = v
				return err
			})
		default:
			_, err = s.skip()
		}
		return err
	})
	if string(st.Conditions) == "null" {
		st.Conditions = nil
	}
	return err
}

// nodeSet is status.nodes as read in one pass: every node folded into a summary, and where
// each one is in data, so that a node can be read again without having been kept.
type nodeSet struct {
	data    []byte
	refs    []nodeRef
	summary rules.NodeSummary
	sorted  bool // refs are in strictly increasing order of their raw IDs (as the API server writes them)
	escaped bool // some node ID holds an escape sequence
}

// nodeRef is where one node is in nodeSet.data: its raw ID and the start of its value.
type nodeRef struct{ id, idEnd, value int }

// refsPool recycles the node positions of a nodeSet: 24 bytes per node, grown per request
// otherwise (a 1.1 MB Workflow has ~1,700 nodes).
var refsPool = sync.Pool{New: func() any { return new([]nodeRef) }}

func getRefs() []nodeRef { return (*refsPool.Get().(*[]nodeRef))[:0] }

// release returns the node positions to the pool; ns must not be used after.
func (ns *nodeSet) release() {
	if ns != nil && cap(ns.refs) > 0 && cap(ns.refs) <= 1<<20 {
		refs := ns.refs[:0]
		refsPool.Put(&refs)
	}
	if ns != nil {
		ns.refs = nil
	}
}

func (ns *nodeSet) id(r nodeRef) []byte { return ns.data[r.id:r.idEnd] }

// readNodes reads the nodes map at s.pos.
func readNodes(s *scanner) (*nodeSet, error) {
	ns := &nodeSet{data: s.data, sorted: true, refs: getRefs()}
	err := s.object(func(id []byte) error {
		r := nodeRef{id: s.keyStart, idEnd: s.keyEnd}
		ns.escaped = ns.escaped || s.keyEscaped
		if k := len(ns.refs); k > 0 && bytes.Compare(ns.id(ns.refs[k-1]), ns.id(r)) >= 0 {
			ns.sorted = false
		}
		s.ws()
		r.value = s.pos
		n, err := readNode(s, false)
		if err != nil {
			return err
		}
		ns.summary.Add(id, n)
		ns.refs = append(ns.refs, r)
		return nil
	})
	return ns, err
}

// readNode reads one node: type, phase, finishedAt, daemoned and taskResultSynced, and, when
// full, startedAt and the raw outputs (the two B2 reads only of incomplete entries' nodes).
// Every node's startedAt is checked, kept or not, so a node is read as strictly either way.
func readNode(s *scanner, full bool) (rules.Node, error) {
	var n rules.Node
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "type":
			n.Type, err = s.enum()
		case "phase":
			n.Phase, err = s.enum()
		case "finishedAt":
			n.FinishedAt, _, err = s.nullableStr()
		case "startedAt":
			if full {
				n.StartedAt, _, err = s.nullableStr()
			} else {
				// Not kept, but checked as nullableStr checks it: a node's startedAt is a
				// string or null whichever node it is.
				err = s.skipNullableStr()
			}
		case "daemoned":
			n.Daemoned, _, err = s.boolean()
		case "taskResultSynced":
			var v, ok bool
			v, ok, err = s.boolean()
			if ok {
				n.TaskResultSynced = &v
			}
		case "outputs":
			// Kept raw (a slice of the body, no copy): B2 compares it with the task result's
			// outputs.
			n.Outputs, err = s.skip()
			n.Outputs = present(n.Outputs)
			if !full {
				n.Outputs = nil
			}
		default:
			_, err = s.skip()
		}
		return err
	})
	return n, err
}

// unreadable says why the node IDs cannot be trusted to name one node each: escaped or
// duplicate IDs, which the API server never writes. "" when they can.
func (ns *nodeSet) unreadable() string {
	if ns.escaped {
		return "a node ID holds an escape sequence"
	}
	if !ns.sorted {
		slices.SortFunc(ns.refs, func(a, b nodeRef) int { return bytes.Compare(ns.id(a), ns.id(b)) })
		ns.sorted = true
		for i := 1; i < len(ns.refs); i++ {
			if bytes.Equal(ns.id(ns.refs[i-1]), ns.id(ns.refs[i])) {
				return "node ID " + string(ns.id(ns.refs[i])) + " appears twice"
			}
		}
	}
	return ""
}

// node reads node id again (in full) from where readNodes found it; ok is false when there is
// no such node. The refs must be sorted (unreadable sorts them).
func (ns *nodeSet) node(id string) (rules.Node, bool, error) {
	i, found := slices.BinarySearchFunc(ns.refs, id, func(r nodeRef, id string) int { return bytes.Compare(ns.id(r), []byte(id)) })
	if !found {
		return rules.Node{}, false, nil
	}
	n, err := readNode(&scanner{data: ns.data, pos: ns.refs[i].value}, true)
	return n, err == nil, err
}

// decompressNodes decodes status.compressedNodes (base64 of gzip of the nodes map, Argo's
// packer.go), reading at most rules.MaxNodesBytes of uncompressed JSON.
func decompressNodes(s string) (*nodeSet, error) {
	compressed, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, rules.MaxNodesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if len(data) > rules.MaxNodesBytes {
		return nil, fmt.Errorf("more than %d bytes uncompressed", rules.MaxNodesBytes)
	}
	sc := &scanner{data: data}
	nodes, err := readNodes(sc)
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		return nil, fmt.Errorf("not a nodes map: %w", err)
	}
	return nodes, nil
}
