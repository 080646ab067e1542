package webhook

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// TaskResultReader reads a WorkflowTaskResult as the API server stores it, for rule B2.
type TaskResultReader interface {
	// StoredTaskResult returns the task result namespace/name, or nil and no error when there is
	// none.
	StoredTaskResult(ctx context.Context, namespace, name string) (*rules.StoredTaskResult, error)
	// TaskResultNames lists the names of every task result of workflow in namespace (its
	// workflow label); never nil without an error.
	TaskResultNames(ctx context.Context, namespace, workflow string) ([]string, error)
}

// APITaskResults reads task results with a GET from the API server: a quorum read, which sees
// the executor's writes even while the controller's informer (and any cache of ours) lags them.
// B2 reads a workflow's task results about once per stuck workflow (a metadata-only list, then
// the incomplete entries), so no cache is kept (and no watch permission needed).
type APITaskResults struct {
	// Reader is an uncached client.
	Reader client.Reader
}

var _ TaskResultReader = APITaskResults{}

// StoredTaskResult implements TaskResultReader.
func (a APITaskResults) StoredTaskResult(ctx context.Context, namespace, name string) (*rules.StoredTaskResult, error) {
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
	tr := &rules.StoredTaskResult{Labels: u.GetLabels()}
	if out, ok := u.Object["outputs"]; ok && out != nil {
		if tr.Outputs, err = json.Marshal(out); err != nil {
			return nil, fmt.Errorf("encoding the outputs of WorkflowTaskResult %s/%s: %w", namespace, name, err)
		}
	}
	return tr, nil
}

// TaskResultNames implements TaskResultReader with a metadata-only list (names and labels, a few
// hundred bytes per task result) with resourceVersion "": a consistent read, served from etcd or
// from the watch cache only once it has caught up with etcd's current revision.
func (a APITaskResults) TaskResultNames(ctx context.Context, namespace, workflow string) ([]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "WorkflowTaskResultList"})
	if err := a.Reader.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{rules.LabelWorkflow: workflow}); err != nil {
		return nil, fmt.Errorf("listing the WorkflowTaskResults of %s/%s: %w", namespace, workflow, err)
	}
	names := make([]string, 0, len(list.Items))
	for i := range list.Items {
		names = append(names, list.Items[i].Name)
	}
	return names, nil
}
