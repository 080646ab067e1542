package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// listSpy counts the lists that reach it and answers with an empty list. As a cache it accepts
// the node-id index; any other method panics (the embedded interface is nil), so a lookup that
// reads anything else fails the test.
type listSpy struct {
	cache.Cache
	lists int
}

func (s *listSpy) IndexField(context.Context, client.Object, string, client.IndexerFunc) error {
	return nil
}

func (s *listSpy) List(context.Context, client.ObjectList, ...client.ListOption) error {
	s.lists++
	return nil
}

// The namespace check is the first thing a lookup does: outside the watched set it answers
// ErrNamespaceNotWatched without asking the informer (which would refuse the list with an error)
// or the API server (which the webhook may not be allowed to read there).
func TestPodCacheRefusesNamespacesItDoesNotWatch(t *testing.T) {
	tests := map[string]struct {
		watched     []string
		namespace   string
		wantErr     error
		wantListing int // lists that reach the cache and the direct reader, each
	}{
		"a namespace outside the watched set is refused before any read": {
			watched: []string{"a", "c"}, namespace: "b", wantErr: ErrNamespaceNotWatched,
		},
		"a namespace in the watched set is looked up": {
			watched: []string{"a", "c"}, namespace: "a", wantListing: 1,
		},
		"without namespaces every namespace is looked up": {
			namespace: "b", wantListing: 1,
		},
		"the empty namespace is not a watched one": {
			watched: []string{"a"}, namespace: "", wantErr: ErrNamespaceNotWatched,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			informer, direct := &listSpy{}, &listSpy{}
			pods, err := NewPodCache(context.Background(), informer, direct, tc.watched...)
			require.NoError(t, err)

			pod, err := pods.PodForNode(context.Background(), tc.namespace, "wf", "wf-3571860313")

			assert.ErrorIs(t, err, tc.wantErr)
			if tc.wantErr != nil {
				assert.EqualError(t, err, "namespace not watched: "+tc.namespace)
			}
			assert.Nil(t, pod)
			assert.Equal(t, tc.wantListing, informer.lists, "lists from the informer cache")
			assert.Equal(t, tc.wantListing, direct.lists, "lists from the API server (the miss fallback)")
		})
	}
}

// fullPod is a workflow pod as the API server holds it, with what the cache need not keep: other
// labels and annotations, a non-Workflow owner, init containers, images, commands, env.
func fullPod(mods ...func(*corev1.Pod)) *corev1.Pod {
	created := metav1.NewTime(time.Date(2024, 4, 26, 10, 50, 0, 0, time.UTC))
	finished := metav1.NewTime(created.Add(41 * time.Second))
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "wf-main-3571860313", Namespace: "argo", UID: "pod-uid", ResourceVersion: "42", CreationTimestamp: created,
			Labels:      map[string]string{LabelWorkflow: "wf", LabelCompleted: "true", "app": "x"},
			Annotations: map[string]string{AnnotationNodeID: "wf-3571860313", "workflows.argoproj.io/outputs": `{"result":"big"}`},
			OwnerReferences: []metav1.OwnerReference{
				{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid"},
				{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "wf", UID: "wf-uid"},
			},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "argoexec", Command: []string{"argoexec", "init"}}},
			Containers: []corev1.Container{
				{Name: "wait", Image: "argoexec", Command: []string{"argoexec", "wait"}, Env: []corev1.EnvVar{{Name: "ARGO_POD_NAME", Value: "x"}}},
				{Name: "main", Image: "alpine", Command: []string{"sh", "-c", "echo hi"}},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "wait", Image: "argoexec", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: created, FinishedAt: finished}}},
				{Name: "main", Image: "alpine", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: created, FinishedAt: finished}}},
			},
		},
	}
	for _, m := range mods {
		m(pod)
	}
	return pod
}

// The cache holds trimmed pods, so every fact the rules read must survive TrimPod: a rule
// answered from the cache decides exactly as one answered from the API server.
func TestTrimPodKeepsEveryFactTheRulesRead(t *testing.T) {
	tests := map[string]*corev1.Pod{
		"a succeeded pod whose containers terminated": fullPod(),
		"a running pod whose main terminated and wait still runs": fullPod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: p.CreationTimestamp}}
		}),
		"a pending pod without container statuses": fullPod(func(p *corev1.Pod) {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending}
		}),
		"a pod without a Workflow owner or node-id annotation": fullPod(func(p *corev1.Pod) {
			p.OwnerReferences = p.OwnerReferences[:1]
			p.Annotations = nil
		}),
	}
	for name, pod := range tests {
		t.Run(name, func(t *testing.T) {
			want := PodFacts(pod)

			out, err := TrimPod(pod.DeepCopy())

			require.NoError(t, err)
			trimmed, ok := out.(*corev1.Pod)
			require.True(t, ok, "TrimPod returns a pod")
			assert.Equal(t, want, PodFacts(trimmed))
			assert.Equal(t, client.ObjectKeyFromObject(pod), client.ObjectKeyFromObject(trimmed))
			assert.Equal(t, pod.UID, trimmed.UID)
			assert.Equal(t, pod.ResourceVersion, trimmed.ResourceVersion, "the informer compares versions")
			assert.Equal(t, map[string]string{LabelWorkflow: "wf"}, trimmed.Labels, "the cache's selector label only")
			var wantAnnotations map[string]string
			if id, ok := pod.Annotations[AnnotationNodeID]; ok {
				wantAnnotations = map[string]string{AnnotationNodeID: id}
			}
			assert.Equal(t, wantAnnotations, trimmed.Annotations, "the node-id annotation only: the index reads it")
			assert.Empty(t, trimmed.Spec.InitContainers)
			for _, c := range trimmed.Spec.Containers {
				assert.Equal(t, corev1.Container{Name: c.Name}, c, "container names only")
			}
		})
	}
}
