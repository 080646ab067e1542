package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// nodeIDIndex indexes cached pods by their node-id annotation.
const nodeIDIndex = "argo-completion-webhook.nodeID"

// ErrNamespaceNotWatched is what PodCache.PodForNode answers, at once, for a namespace outside
// the cache's namespaces (--namespaces): the informer holds none of its pods and the webhook may
// not be allowed to read them, so there is nothing to look up and nothing has failed.
var ErrNamespaceNotWatched = errors.New("namespace not watched")

// PodCache looks up a node's pod in an informer cache of workflow pods, falling back to a
// direct list from the API server on a miss (a pod the informer has not seen yet).
type PodCache struct {
	cache  cache.Cache
	direct client.Reader
	// namespaces is the set the cache watches; nil means every namespace.
	namespaces map[string]struct{}
}

var _ PodLookup = (*PodCache)(nil)

// workflowPodSelector selects pods that belong to a workflow: the only pods the rules read.
func workflowPodSelector() labels.Selector {
	req, err := labels.NewRequirement(LabelWorkflow, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant requirement; cannot fail
	}
	return labels.NewSelector().Add(*req)
}

// PodCacheOptions returns the cache options for workflow pods: only pods labelled with a
// workflow, stripped by TrimPod to the fields the rules read. namespaces limits the cache to
// those namespaces; empty means all.
func PodCacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: workflowPodSelector(), Transform: TrimPod},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// NewPodCache indexes c's pods by node ID and returns the lookup. c must have been created with
// PodCacheOptions(namespaces); direct is an uncached reader used on a cache miss. namespaces are
// the ones the cache watches (none: all): a lookup in any other namespace answers
// ErrNamespaceNotWatched without reading anything.
func NewPodCache(ctx context.Context, c cache.Cache, direct client.Reader, namespaces ...string) (*PodCache, error) {
	err := c.IndexField(ctx, &corev1.Pod{}, nodeIDIndex, func(o client.Object) []string {
		if id := o.GetAnnotations()[AnnotationNodeID]; id != "" {
			return []string{id}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing pods by node ID: %w", err)
	}
	p := &PodCache{cache: c, direct: direct}
	if len(namespaces) > 0 {
		p.namespaces = make(map[string]struct{}, len(namespaces))
		for _, ns := range namespaces {
			p.namespaces[ns] = struct{}{}
		}
	}
	return p, nil
}

// PodForNode implements PodLookup. It answers from the informer through the node-id index, asks
// direct only on a miss, and answers ErrNamespaceNotWatched for a namespace outside the cache's.
func (p *PodCache) PodForNode(ctx context.Context, namespace, workflow, nodeID string) (*Pod, error) {
	if p.namespaces != nil {
		// The cache would refuse the list ("unknown namespace for the cache") and the direct
		// reader may lack the RBAC: answer without asking either.
		if _, ok := p.namespaces[namespace]; !ok {
			return nil, fmt.Errorf("%w: %s", ErrNamespaceNotWatched, namespace)
		}
	}
	var list corev1.PodList
	err := p.cache.List(ctx, &list, client.InNamespace(namespace),
		client.MatchingFields{nodeIDIndex: nodeID}, client.MatchingLabels{LabelWorkflow: workflow})
	if err != nil {
		return nil, fmt.Errorf("listing cached pods: %w", err)
	}
	if pod := findNodePod(list.Items, nodeID); pod != nil {
		return pod, nil
	}
	if p.direct == nil {
		return nil, nil
	}
	// Miss: the informer may lag the pod's creation; ask the API server.
	list = corev1.PodList{}
	if err := p.direct.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{LabelWorkflow: workflow}); err != nil {
		return nil, fmt.Errorf("listing pods of workflow %s: %w", workflow, err)
	}
	return findNodePod(list.Items, nodeID), nil
}

// findNodePod returns the facts of the pod whose node-id annotation is nodeID, or nil.
func findNodePod(pods []corev1.Pod, nodeID string) *Pod {
	for i := range pods {
		if pods[i].Annotations[AnnotationNodeID] == nodeID {
			return PodFacts(&pods[i])
		}
	}
	return nil
}

// PodFacts reads what the rules use from a pod.
func PodFacts(pod *corev1.Pod) *Pod {
	p := &Pod{Name: pod.Name, Created: pod.CreationTimestamp.Time, Phase: string(pod.Status.Phase),
		Containers: make([]Container, 0, len(pod.Spec.Containers))}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" && strings.HasPrefix(o.APIVersion, "argoproj.io/") {
			p.WorkflowUID = string(o.UID)
		}
	}
	for _, c := range pod.Spec.Containers {
		ct := Container{Name: c.Name}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == c.Name {
				if t := s.State.Terminated; t != nil {
					ct.Terminated, ct.TerminatedAt = true, t.FinishedAt.Time
				}
			}
		}
		p.Containers = append(p.Containers, ct)
	}
	return p
}

// TrimPod is the cache transform: it keeps only what the rules and the cache itself read (name,
// namespace, UID, resourceVersion, creationTimestamp, the workflow label, the node-id annotation,
// Workflow owners, container names, terminated states and the phase), so a cluster's worth of
// pods costs little memory. PodFacts of a trimmed pod equal PodFacts of the pod.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp,
			Labels:            map[string]string{LabelWorkflow: pod.Labels[LabelWorkflow]},
		},
	}
	if id, ok := pod.Annotations[AnnotationNodeID]; ok {
		trimmed.Annotations = map[string]string{AnnotationNodeID: id}
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" {
			trimmed.OwnerReferences = append(trimmed.OwnerReferences, metav1.OwnerReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID})
		}
	}
	for _, c := range pod.Spec.Containers {
		trimmed.Spec.Containers = append(trimmed.Spec.Containers, corev1.Container{Name: c.Name})
	}
	for _, s := range pod.Status.ContainerStatuses {
		st := corev1.ContainerStatus{Name: s.Name}
		if t := s.State.Terminated; t != nil {
			st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, FinishedAt: t.FinishedAt}
		}
		trimmed.Status.ContainerStatuses = append(trimmed.Status.ContainerStatuses, st)
	}
	trimmed.Status.Phase = pod.Status.Phase
	return trimmed, nil
}
