package webhook

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// maxBodyBytes caps an AdmissionReview body. It is controller-runtime's own cap for admission
// webhooks: a review holds object and oldObject, each up to etcd's ~1.5 MiB request limit, plus
// the request's envelope, so no legitimate review comes close.
const maxBodyBytes = 7 << 20

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

// decodeReview reads an AdmissionReview in one pass, keeping object and oldObject as raw
// sub-slices of body. Its errors name what was wrong.
func decodeReview(body []byte) (*review, error) {
	r, err := scanReview(body)
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

func scanReview(body []byte) (*review, error) {
	s := &scanner{data: body}
	r := &review{}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "apiVersion":
			r.APIVersion, err = s.str()
		case "kind":
			r.Kind, err = s.str()
		case "request":
			if s.peek() == 'n' {
				return s.literal("null")
			}
			r.Request = &reviewRequest{}
			err = scanRequest(s, r.Request)
		default:
			_, err = s.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, s.end()
}

func scanRequest(s *scanner, req *reviewRequest) error {
	return s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "uid":
			req.UID, err = s.str()
		case "kind":
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
		case "userInfo":
			err = s.object(func(k []byte) error {
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
		case "dryRun":
			var v, ok bool
			v, ok, err = s.boolean()
			if ok {
				req.DryRun = &v
			}
		case "object":
			req.Object, err = s.skip()
		case "oldObject":
			req.OldObject, err = s.skip()
		default:
			_, err = s.skip()
		}
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

// readTaskResult builds the rule input from a task result request, reading only metadata.name,
// labels, the Workflow owner's UID and the raw outputs of object (and oldObject's outputs).
func readTaskResult(req *reviewRequest) (rules.TaskResult, map[string]string, error) {
	tr := rules.TaskResult{Operation: req.Operation, WriterPod: req.writerPod()}
	s := &scanner{data: req.Object}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "metadata":
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "name":
					tr.Name, err = s.str()
				case "labels":
					tr.Labels, err = s.stringMap()
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
							tr.OwnerWorkflowUID = uid
						}
						return err
					})
				default:
					_, err = s.skip()
				}
				return err
			})
		case "outputs":
			tr.Outputs, err = s.skip()
		default:
			_, err = s.skip()
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return rules.TaskResult{}, nil, fmt.Errorf("request.object is not a WorkflowTaskResult: %w", err)
	}
	tr.Outputs = present(tr.Outputs)
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
			return rules.TaskResult{}, nil, fmt.Errorf("request.oldObject is not a WorkflowTaskResult: %w", err)
		}
		tr.OldOutputs = present(tr.OldOutputs)
	}
	return tr, tr.Labels, nil
}

// present returns raw, or nil when it is absent or JSON null.
func present(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// workflowHead is what rule B2's label checks read of a Workflow: enough to decide most requests
// without reading status, which is kept raw.
type workflowHead struct {
	Name       string
	UID        string
	Labels     map[string]string
	Finalizers []string
	Status     json.RawMessage
}

// readWorkflowHead reads a Workflow's name and labels and finds (without reading) its status.
func readWorkflowHead(raw []byte) (workflowHead, error) {
	var h workflowHead
	s := &scanner{data: raw}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "metadata":
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "name":
					h.Name, err = s.str()
				case "uid":
					h.UID, err = s.str()
				case "labels":
					h.Labels, err = s.stringMap()
				case "finalizers":
					err = s.array(func() error {
						f, err := s.str()
						h.Finalizers = append(h.Finalizers, f)
						return err
					})
				default:
					_, err = s.skip()
				}
				return err
			})
		case "status":
			h.Status, err = s.skip()
		default:
			_, err = s.skip()
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	return h, err
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

// readWorkflowStatus reads status and fills the rule input's status fields.
func readWorkflowStatus(raw json.RawMessage, wf *rules.Workflow) (*workflowStatus, error) {
	st := &workflowStatus{}
	var compressed, offloaded string
	if raw = present(raw); raw != nil {
		s := &scanner{data: raw}
		err := s.object(func(key []byte) error {
			var err error
			switch string(key) {
			case "phase":
				wf.Phase, _, err = s.nullableStr()
			case "finishedAt":
				begin := s.pos
				wf.FinishedAt, _, err = s.nullableStr()
				st.FinishedAt = bytes.TrimSpace(s.data[begin:s.pos])
			case "conditions":
				begin := s.pos
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
				wf.Nodes, err = scanNodes(s)
			case "compressedNodes":
				compressed, _, err = s.nullableStr()
			case "offloadNodeStatusVersion":
				offloaded, _, err = s.nullableStr()
			case "taskResultsCompletionStatus":
				err = s.object(func(k []byte) error {
					v, _, err := s.boolean()
					if wf.TaskResultsCompletion == nil {
						wf.TaskResultsCompletion = map[string]bool{}
					}
					wf.TaskResultsCompletion[string(k)] = v
					return err
				})
			default:
				_, err = s.skip()
			}
			return err
		})
		if err == nil {
			err = s.end()
		}
		if err != nil {
			return nil, fmt.Errorf("request.object.status is not a Workflow status: %w", err)
		}
	}
	if string(st.Conditions) == "null" {
		st.Conditions = nil
	}
	switch {
	case offloaded != "":
		wf.NodesUnreadable = "offloaded to the persistence database (offloadNodeStatusVersion " + offloaded + ")"
	case compressed != "":
		nodes, err := decompressNodes(compressed)
		if err != nil {
			wf.NodesUnreadable = "compressedNodes: " + err.Error()
		} else {
			wf.Nodes = nodes
		}
	}
	return st, nil
}

// scanNodes reads status.nodes: for each node only type, phase, startedAt, finishedAt,
// daemoned, taskResultSynced and the raw outputs.
func scanNodes(s *scanner) (map[string]rules.Node, error) {
	nodes := map[string]rules.Node{}
	err := s.object(func(id []byte) error {
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
				n.StartedAt, _, err = s.nullableStr()
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
				// outputs only for the few nodes whose task results are incomplete.
				n.Outputs, err = s.skip()
				n.Outputs = present(n.Outputs)
			default:
				_, err = s.skip()
			}
			return err
		})
		nodes[string(id)] = n
		return err
	})
	return nodes, err
}

// decompressNodes decodes status.compressedNodes (base64 of gzip of the nodes map, Argo's
// packer.go), reading at most rules.MaxNodesBytes of uncompressed JSON.
func decompressNodes(s string) (map[string]rules.Node, error) {
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
	nodes, err := scanNodes(sc)
	if err == nil {
		err = sc.end()
	}
	if err != nil {
		return nil, fmt.Errorf("not a nodes map: %w", err)
	}
	return nodes, nil
}
