package webhook

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxBodyBytes caps an AdmissionReview body. It is controller-runtime's own cap for admission
// webhooks: a review holds object and oldObject, each up to etcd's ~1.5 MiB request limit, plus
// the request's envelope, so no legitimate review comes close.
const maxBodyBytes = 7 << 20

// maxNodesBytes caps the uncompressed size of status.compressedNodes. Argo compresses nodes only
// to fit a Workflow under MAX_WORKFLOW_SIZE (1 MiB); 64 MiB leaves room for a 60× ratio and stops
// a gzip bomb from costing more than that.
const maxNodesBytes = 64 << 20

// review is the part of an admission.k8s.io/v1 AdmissionReview the handlers read.
type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *reviewRequest `json:"request"`
}

// reviewRequest is the part of an AdmissionRequest the handlers read.
type reviewRequest struct {
	UID  string `json:"uid"`
	Kind struct {
		Group   string `json:"group"`
		Version string `json:"version"`
		Kind    string `json:"kind"`
	} `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Operation string `json:"operation"`
	UserInfo  struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"userInfo"`
	DryRun    *bool           `json:"dryRun"`
	Object    json.RawMessage `json:"object"`
	OldObject json.RawMessage `json:"oldObject"`
}

// decodeReview reads an AdmissionReview and checks its envelope. Its errors name what was wrong.
func decodeReview(body []byte) (*review, error) {
	var r review
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("body is not an AdmissionReview: %w", err)
	}
	switch {
	case r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview":
		return &r, fmt.Errorf("expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got %q %q", r.APIVersion, r.Kind)
	case r.Request == nil:
		return &r, errors.New("AdmissionReview has no request")
	case r.Request.UID == "":
		return &r, errors.New("AdmissionReview request has no uid")
	}
	return &r, nil
}

// writerPod returns the pod name a bound service-account token names, or "".
func (r *reviewRequest) writerPod() string {
	if v := r.UserInfo.Extra[ExtraPodName]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// objectMeta is the part of metadata the rules read.
type objectMeta struct {
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels"`
	OwnerReferences []struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		UID        string `json:"uid"`
	} `json:"ownerReferences"`
}

// workflowUID returns the UID of the Workflow owner reference, or "".
func (m *objectMeta) workflowUID() string {
	for _, o := range m.OwnerReferences {
		if o.Kind == "Workflow" && bytes.HasPrefix([]byte(o.APIVersion), []byte("argoproj.io/")) {
			return o.UID
		}
	}
	return ""
}

// taskResultObject is the part of a WorkflowTaskResult the A rules read.
type taskResultObject struct {
	Metadata objectMeta      `json:"metadata"`
	Outputs  json.RawMessage `json:"outputs"`
}

// readTaskResult builds the rule input from a task result request.
func readTaskResult(req *reviewRequest) (TaskResult, map[string]string, error) {
	var obj taskResultObject
	if err := json.Unmarshal(req.Object, &obj); err != nil {
		return TaskResult{}, nil, fmt.Errorf("request.object is not a WorkflowTaskResult: %w", err)
	}
	tr := TaskResult{
		Operation:        req.Operation,
		Name:             obj.Metadata.Name,
		Labels:           obj.Metadata.Labels,
		Outputs:          present(obj.Outputs),
		OwnerWorkflowUID: obj.Metadata.workflowUID(),
		WriterPod:        req.writerPod(),
	}
	if tr.Name == "" {
		tr.Name = req.Name
	}
	if req.Operation == opUpdate && len(present(req.OldObject)) > 0 {
		var old struct {
			Outputs json.RawMessage `json:"outputs"`
		}
		if err := json.Unmarshal(req.OldObject, &old); err != nil {
			return TaskResult{}, nil, fmt.Errorf("request.oldObject is not a WorkflowTaskResult: %w", err)
		}
		tr.OldOutputs = present(old.Outputs)
	}
	return tr, obj.Metadata.Labels, nil
}

// present returns raw, or nil when it is absent or JSON null.
func present(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// workflowHead is what rule B2's label checks read of a Workflow: enough to decide most requests
// without decoding status.
type workflowHead struct {
	Metadata objectMeta      `json:"metadata"`
	Status   json.RawMessage `json:"status"`
}

// workflowStatus is the part of a Workflow's status rule B2 reads, and what building its patch
// needs to know (which keys exist, where the Completed condition is).
type workflowStatus struct {
	Phase                       string            `json:"phase"`
	FinishedAt                  json.RawMessage   `json:"finishedAt"`
	Conditions                  json.RawMessage   `json:"conditions"`
	Nodes                       map[string]Node   `json:"nodes"`
	CompressedNodes             string            `json:"compressedNodes"`
	OffloadNodeStatusVersion    string            `json:"offloadNodeStatusVersion"`
	TaskResultsCompletionStatus map[string]bool   `json:"taskResultsCompletionStatus"`
	conditions                  []statusCondition `json:"-"`
}

// statusCondition is one entry of status.conditions.
type statusCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// readWorkflowStatus decodes status and fills the rule input's status fields.
func readWorkflowStatus(raw json.RawMessage, wf *Workflow) (*workflowStatus, error) {
	st := &workflowStatus{}
	if raw = present(raw); raw != nil {
		if err := json.Unmarshal(raw, st); err != nil {
			return nil, fmt.Errorf("request.object.status is not a Workflow status: %w", err)
		}
	}
	if c := present(st.Conditions); c != nil {
		if err := json.Unmarshal(c, &st.conditions); err != nil {
			return nil, fmt.Errorf("request.object.status.conditions: %w", err)
		}
	}
	var finishedAt string
	if f := present(st.FinishedAt); f != nil {
		if err := json.Unmarshal(f, &finishedAt); err != nil {
			return nil, fmt.Errorf("request.object.status.finishedAt: %w", err)
		}
	}
	wf.Phase = st.Phase
	wf.FinishedAt = finishedAt
	wf.TaskResultsCompletion = st.TaskResultsCompletionStatus
	wf.Nodes = st.Nodes
	switch {
	case st.OffloadNodeStatusVersion != "":
		wf.NodesUnreadable = "offloaded to the persistence database (offloadNodeStatusVersion " + st.OffloadNodeStatusVersion + ")"
	case st.CompressedNodes != "":
		nodes, err := decompressNodes(st.CompressedNodes)
		if err != nil {
			wf.NodesUnreadable = "compressedNodes: " + err.Error()
		} else {
			wf.Nodes = nodes
		}
	}
	return st, nil
}

// decompressNodes decodes status.compressedNodes (base64 of gzip of the nodes map, Argo's
// packer.go), reading at most maxNodesBytes of uncompressed JSON.
func decompressNodes(s string) (map[string]Node, error) {
	compressed, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxNodesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if len(data) > maxNodesBytes {
		return nil, fmt.Errorf("more than %d bytes uncompressed", maxNodesBytes)
	}
	var nodes map[string]Node
	if err := json.Unmarshal(data, &nodes); err != nil {
		return nil, fmt.Errorf("not a nodes map: %w", err)
	}
	return nodes, nil
}

// ParseWorkflowStatus reads a Workflow's status as rule B2 and the repair command do: the phase,
// finishedAt, taskResultsCompletionStatus and the nodes (decoding compressedNodes; NodesUnreadable
// says why when they are offloaded or corrupt).
func ParseWorkflowStatus(status []byte) (Workflow, error) {
	var wf Workflow
	_, err := readWorkflowStatus(status, &wf)
	return wf, err
}
