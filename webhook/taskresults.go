package webhook

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TaskResultReader reads a WorkflowTaskResult as the API server stores it, for rule B2.
type TaskResultReader interface {
	// StoredTaskResult returns the task result namespace/name, or nil and no error when there is
	// none.
	StoredTaskResult(ctx context.Context, namespace, name string) (*StoredTaskResult, error)
}

// APITaskResults reads task results with a GET from the API server: a quorum read, which sees
// the executor's writes even while the controller's informer (and any cache of ours) lags them.
// B2 reads only the few incomplete entries of a workflow in its stuck shape, so no cache is kept
// (and no list/watch permission needed: RBAC grants get only).
type APITaskResults struct {
	// Reader is an uncached client.
	Reader client.Reader
}

var _ TaskResultReader = APITaskResults{}

// StoredTaskResult implements TaskResultReader.
func (a APITaskResults) StoredTaskResult(ctx context.Context, namespace, name string) (*StoredTaskResult, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("WorkflowTaskResult")
	err := a.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading WorkflowTaskResult %s/%s: %w", namespace, name, err)
	}
	tr := &StoredTaskResult{Labels: u.GetLabels()}
	if out, ok := u.Object["outputs"]; ok && out != nil {
		if tr.Outputs, err = json.Marshal(out); err != nil {
			return nil, fmt.Errorf("encoding the outputs of WorkflowTaskResult %s/%s: %w", namespace, name, err)
		}
	}
	return tr, nil
}
