package rules

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
)

// MaxNodesBytes caps the uncompressed size of status.compressedNodes. Argo compresses nodes only
// to fit a Workflow under MAX_WORKFLOW_SIZE (1 MiB); 64 MiB leaves room for a 60× ratio and stops
// a gzip bomb from costing more than that.
const MaxNodesBytes = 64 << 20

// workflowStatus is what ParseWorkflowStatus reads of status, with encoding/json.
type workflowStatus struct {
	Phase                       string          `json:"phase"`
	FinishedAt                  string          `json:"finishedAt"`
	Nodes                       json.RawMessage `json:"nodes"`
	CompressedNodes             string          `json:"compressedNodes"`
	OffloadNodeStatusVersion    string          `json:"offloadNodeStatusVersion"`
	TaskResultsCompletionStatus map[string]bool `json:"taskResultsCompletionStatus"`
}

// ParseWorkflowStatus reads a Workflow's status as the repair command does: the phase,
// finishedAt, taskResultsCompletionStatus and the nodes (decoding compressedNodes; NodesUnreadable
// says why when they are offloaded or corrupt). It is the plain encoding/json reading of what the
// webhook's one-pass reader fills for rule B2; a webhook test holds the two equal.
func ParseWorkflowStatus(status []byte) (Workflow, error) {
	var wf Workflow
	if len(bytes.TrimSpace(status)) == 0 {
		return wf, nil
	}
	var st workflowStatus
	if err := json.Unmarshal(status, &st); err != nil {
		return wf, fmt.Errorf("request.object.status is not a Workflow status: %w", err)
	}
	wf.Phase, wf.FinishedAt = st.Phase, st.FinishedAt
	if len(st.TaskResultsCompletionStatus) > 0 {
		wf.TaskResultsCompletion = st.TaskResultsCompletionStatus
	}
	if st.Nodes != nil {
		nodes, err := readNodes(st.Nodes)
		if err != nil {
			return Workflow{}, fmt.Errorf("request.object.status is not a Workflow status: %w", err)
		}
		wf.Nodes = nodes
	}
	switch {
	case st.OffloadNodeStatusVersion != "":
		wf.NodesUnreadable = "offloaded to the persistence database (offloadNodeStatusVersion " + st.OffloadNodeStatusVersion + ")"
	case st.CompressedNodes != "":
		nodes, err := DecompressNodes(st.CompressedNodes)
		if err != nil {
			wf.NodesUnreadable = "compressedNodes: " + err.Error()
		} else {
			wf.Nodes = nodes
		}
	}
	return wf, nil
}

// DecompressNodes decodes status.compressedNodes (base64 of gzip of the nodes map, Argo's
// packer.go), reading at most MaxNodesBytes of uncompressed JSON.
func DecompressNodes(s string) (map[string]Node, error) {
	compressed, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, MaxNodesBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if len(data) > MaxNodesBytes {
		return nil, fmt.Errorf("more than %d bytes uncompressed", MaxNodesBytes)
	}
	nodes, err := readNodes(data)
	if err != nil {
		return nil, fmt.Errorf("not a nodes map: %w", err)
	}
	return nodes, nil
}

// readNodes reads a nodes map; null reads as empty, and a null outputs as absent (nil), as the
// webhook's reader does.
func readNodes(raw []byte) (map[string]Node, error) {
	nodes := map[string]Node{}
	if err := json.Unmarshal(raw, &nodes); err != nil {
		return nil, err
	}
	if nodes == nil {
		nodes = map[string]Node{}
	}
	for id, n := range nodes {
		if string(n.Outputs) == "null" {
			n.Outputs = nil
			nodes[id] = n
		}
	}
	return nodes, nil
}
