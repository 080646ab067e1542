package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// listSpy counts the lists that reach it and answers with an empty list. Any other method
// panics (the embedded interface is nil), so a lookup that reads anything else fails the test.
type listSpy struct {
	client.Reader
	lists int
}

func (s *listSpy) List(context.Context, client.ObjectList, ...client.ListOption) error {
	s.lists++
	return nil
}

// idleListWatch is a ListerWatcher for a cache that is never started.
type idleListWatch struct{ toolscache.ListerWatcher }

// seededPodCache is a PodCache over namespaces (none: all) that is never started: each store is
// synced with the given pods (those of its namespace, or all of them), as a first list would.
func seededPodCache(t *testing.T, direct client.Reader, namespaces []string, pods ...*corev1.Pod) *PodCache {
	t.Helper()
	p := newPodCache(func(string) toolscache.ListerWatcher { return idleListWatch{} }, direct, PodCacheOptions{Namespaces: namespaces})
	for ns, s := range p.stores {
		var list []any
		for _, pod := range pods {
			if ns == metav1.NamespaceAll || pod.Namespace == ns {
				list = append(list, pod.DeepCopy())
			}
		}
		require.NoError(t, s.Replace(list, "1"))
	}
	return p
}

// The namespace check is the first thing a lookup does: outside the watched set it answers
// ErrNamespaceNotWatched without reading the cache (which holds none of its pods) or asking the
// API server (which the webhook may not be allowed to read there).
func TestPodCacheRefusesNamespacesItDoesNotWatch(t *testing.T) {
	inB := func(p *corev1.Pod) { p.Namespace = "b" }
	tests := map[string]struct {
		watched    []string
		namespace  string
		nodeID     string
		wantErr    error
		wantPod    bool
		wantDirect int // lists that reach the direct reader
	}{
		"a namespace outside the watched set is refused before any read": {
			watched: []string{"a", "c"}, namespace: "b", nodeID: "wf-3571860313", wantErr: ErrNamespaceNotWatched,
		},
		"a pod cached in a watched namespace is answered by the cache": {
			watched: []string{"a", "c"}, namespace: "a", nodeID: "wf-3571860313", wantPod: true,
		},
		"a pod missing from a watched namespace is asked of the API server": {
			watched: []string{"a", "c"}, namespace: "a", nodeID: "wf-1111111111", wantDirect: 1,
		},
		"without namespaces every namespace is looked up": {
			namespace: "b", nodeID: "wf-3571860313", wantPod: true,
		},
		"without namespaces a miss is asked of the API server": {
			namespace: "b", nodeID: "wf-1111111111", wantDirect: 1,
		},
		"the empty namespace is not a watched one": {
			watched: []string{"a"}, namespace: "", nodeID: "wf-3571860313", wantErr: ErrNamespaceNotWatched,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			direct := &listSpy{}
			pods := seededPodCache(t, direct, tc.watched, fullPod(func(p *corev1.Pod) { p.Namespace = "a" }), fullPod(inB))

			pod, err := pods.PodForNode(context.Background(), tc.namespace, "wf", tc.nodeID)

			assert.ErrorIs(t, err, tc.wantErr)
			if tc.wantErr != nil {
				assert.EqualError(t, err, "namespace not watched: "+tc.namespace)
			}
			if tc.wantPod {
				assert.Equal(t, rules.PodFacts(fullPod()), pod)
			} else {
				assert.Nil(t, pod)
			}
			assert.Equal(t, tc.wantDirect, direct.lists, "lists from the API server (the miss fallback)")
		})
	}
}

// Until the cache has synced, a lookup waits for it within the request's deadline and then
// fails: it neither answers from a partial cache nor sends every request to the API server.
func TestPodCacheLookupBeforeSyncFailsAtTheDeadline(t *testing.T) {
	direct := &listSpy{}
	pods := newPodCache(func(string) toolscache.ListerWatcher { return idleListWatch{} }, direct, PodCacheOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	pod, err := pods.PodForNode(ctx, "argo", "wf", "wf-3571860313")

	assert.Nil(t, pod)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "pod cache not synced")
	assert.Zero(t, direct.lists, "lists from the API server")
	assert.False(t, pods.WaitForCacheSync(ctx), "not synced")
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
			Labels:      map[string]string{rules.LabelWorkflow: "wf", rules.LabelCompleted: "true", "app": "x"},
			Annotations: map[string]string{rules.AnnotationNodeID: "wf-3571860313", "workflows.argoproj.io/outputs": `{"result":"big"}`},
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

// The cache keeps an entry, not the pod, so every fact the rules read must survive it: a rule
// answered from the cache decides exactly as one answered from the API server.
func TestCachedPodKeepsEveryFactTheRulesRead(t *testing.T) {
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
		"a pod whose statuses come in another order, with an init container's and an unknown one's": fullPod(func(p *corev1.Pod) {
			s := p.Status.ContainerStatuses
			s[0], s[1] = s[1], s[0]
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}}
			p.Status.ContainerStatuses = append(s, corev1.ContainerStatus{Name: "gone", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}})
		}),
		"a container terminated without a finish time": fullPod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses[1].State.Terminated.FinishedAt = metav1.Time{}
		}),
		"a pod with two Workflow owners and a Workflow of another group": fullPod(func(p *corev1.Pod) {
			p.OwnerReferences = append(p.OwnerReferences,
				metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "wf2", UID: "wf2-uid"},
				metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Workflow", Name: "x", UID: "x-uid"})
		}),
		"a pod with a supervisor and a sidecar": fullPod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "supervisor"}, corev1.Container{Name: "sidecar"})
		}),
		"a pod without containers": fullPod(func(p *corev1.Pod) {
			p.Spec.Containers = nil
			p.Status = corev1.PodStatus{}
		}),
		"a pod decoded as the API server sends it (local times)": fullPod(func(p *corev1.Pod) {
			p.CreationTimestamp = metav1.NewTime(p.CreationTimestamp.Local())
			p.Status.ContainerStatuses[1].State.Terminated.FinishedAt = metav1.NewTime(time.Now().Local())
		}),
	}
	for name, pod := range tests {
		t.Run(name, func(t *testing.T) {
			want := rules.PodFacts(pod)

			out, err := toCachedPod(pod.DeepCopy())

			require.NoError(t, err)
			c, ok := out.(*cachedPod)
			require.True(t, ok, "the transform returns an entry")
			assert.Equal(t, want, c.facts())
			assert.Equal(t, pod.Namespace, c.namespace.Value())
			assert.Equal(t, pod.Name, c.name)
			assert.Equal(t, pod.Labels[rules.LabelWorkflow], c.workflow.Value(), "the selector's label")
			assert.Equal(t, pod.Annotations[rules.AnnotationNodeID], c.nodeID, "the index's annotation")
			again, err := toCachedPod(c)
			require.NoError(t, err)
			assert.Same(t, c, again, "the transform of an entry is the entry")

			if c.nodeID == "" {
				return
			}
			s := newPodStore()
			require.NoError(t, s.Add(pod.DeepCopy()))
			got := s.podForNode(pod.Namespace, pod.Labels[rules.LabelWorkflow], c.nodeID)
			assert.Equal(t, want, got, "the lookup answers exactly PodFacts")
			got.Name = "changed"
			if len(got.Containers) > 0 {
				got.Containers[0].Name = "changed"
			}
			assert.Equal(t, want, s.podForNode(pod.Namespace, pod.Labels[rules.LabelWorkflow], c.nodeID), "each answer is the caller's own copy")
		})
	}
}

// podWith is a small workflow pod: namespace/name of workflow, annotated with nodeID ("": none).
func podWith(namespace, name, workflow, nodeID string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{rules.LabelWorkflow: workflow}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}}}
	if nodeID != "" {
		pod.Annotations = map[string]string{rules.AnnotationNodeID: nodeID}
	}
	return pod
}

// The store follows the reflector's adds, updates, deletes and relists, and its index answers by
// namespace and node ID, the workflow label choosing among pods that share a node ID.
func TestPodStoreIndexesPodsByNamespaceAndNodeID(t *testing.T) {
	type lookup struct {
		namespace, workflow, nodeID string
		wantPod                     string // "": none
	}
	tests := map[string]struct {
		ops       func(s *podStore) error
		lookups   []lookup
		wantCount int
	}{
		"an added pod is found by its namespace and node ID": {
			ops: func(s *podStore) error { return s.Add(podWith("argo", "p1", "wf", "n1")) },
			lookups: []lookup{
				{"argo", "wf", "n1", "p1"},
				{"other", "wf", "n1", ""},
				{"argo", "wf", "n2", ""},
				{"argo", "wf2", "n1", ""},
			},
			wantCount: 1,
		},
		"pods of two workflows sharing a node ID are each found for their own workflow": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Add(podWith("argo", "p2", "wf2", "n1")), s.Add(podWith("argo", "p3", "wf3", "n1")))
			},
			lookups:   []lookup{{"argo", "wf", "n1", "p1"}, {"argo", "wf2", "n1", "p2"}, {"argo", "wf3", "n1", "p3"}},
			wantCount: 3,
		},
		"deleting the middle of a shared node ID keeps the others": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Add(podWith("argo", "p2", "wf2", "n1")), s.Add(podWith("argo", "p3", "wf3", "n1")),
					s.Delete(podWith("argo", "p2", "wf2", "n1")))
			},
			lookups:   []lookup{{"argo", "wf", "n1", "p1"}, {"argo", "wf2", "n1", ""}, {"argo", "wf3", "n1", "p3"}},
			wantCount: 2,
		},
		"an update that changes the node ID moves the pod in the index": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Update(podWith("argo", "p1", "wf", "n2")))
			},
			lookups:   []lookup{{"argo", "wf", "n1", ""}, {"argo", "wf", "n2", "p1"}},
			wantCount: 1,
		},
		"an update that drops the node ID drops the pod": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Update(podWith("argo", "p1", "wf", "")))
			},
			lookups: []lookup{{"argo", "wf", "n1", ""}},
		},
		"a pod without a node ID is not kept": {
			ops:     func(s *podStore) error { return s.Add(podWith("argo", "p1", "wf", "")) },
			lookups: []lookup{{"argo", "wf", "", ""}},
		},
		"a deleted pod is gone, and deleting it again is no error": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Delete(podWith("argo", "p1", "wf", "n1")), s.Delete(podWith("argo", "p1", "wf", "n1")))
			},
			lookups: []lookup{{"argo", "wf", "n1", ""}},
		},
		"a pod deleted as a final state unknown is gone": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Delete(toolscache.DeletedFinalStateUnknown{Key: "argo/p1"}))
			},
			lookups: []lookup{{"argo", "wf", "n1", ""}},
		},
		"a relist replaces everything the store held": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("argo", "p1", "wf", "n1")), s.Add(podWith("argo", "p2", "wf", "n2")),
					s.Replace([]any{podWith("argo", "p2", "wf", "n2b"), newCachedPod(podWith("argo", "p3", "wf", "n3"))}, "2"))
			},
			lookups:   []lookup{{"argo", "wf", "n1", ""}, {"argo", "wf", "n2", ""}, {"argo", "wf", "n2b", "p2"}, {"argo", "wf", "n3", "p3"}},
			wantCount: 2,
		},
		"the same name in two namespaces is two pods": {
			ops: func(s *podStore) error {
				return errorsOf(s.Add(podWith("a", "p1", "wf", "n1")), s.Add(podWith("b", "p1", "wf", "n1")), s.Delete(podWith("a", "p1", "wf", "n1")))
			},
			lookups:   []lookup{{"a", "wf", "n1", ""}, {"b", "wf", "n1", "p1"}},
			wantCount: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newPodStore()

			require.NoError(t, tc.ops(s))

			for _, l := range tc.lookups {
				pod := s.podForNode(l.namespace, l.workflow, l.nodeID)
				if l.wantPod == "" {
					assert.Nil(t, pod, "lookup %+v", l)
				} else if assert.NotNil(t, pod, "lookup %+v", l) {
					assert.Equal(t, l.wantPod, pod.Name, "lookup %+v", l)
				}
			}
			assert.Equal(t, tc.wantCount, s.count(), "pods held")
		})
	}
}

// errorsOf returns the first non-nil error.
func errorsOf(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// fakePodAPI is an API server for pods over plain HTTP that serves pods in JSON: lists in pages
// of the requested limit, a streamed initial list (WatchList) when streams is set, and otherwise
// refuses sendInitialEvents as a kube-apiserver without the WatchList feature does. Watches
// stay open until the client leaves. It records each request's query.
type fakePodAPI struct {
	pods    []corev1.Pod
	streams bool
	mu      sync.Mutex
	lists   []map[string]string // the query of each list
	watches []map[string]string // the query of each watch
}

func (f *fakePodAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := map[string]string{}
	for k, v := range r.URL.Query() {
		q[k] = v[0]
	}
	f.mu.Lock()
	if q["watch"] == "true" {
		f.watches = append(f.watches, q)
	} else {
		f.lists = append(f.lists, q)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	const rv = "100"
	switch {
	case q["watch"] == "true" && q["sendInitialEvents"] == "true" && !f.streams:
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid, Message: "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"})
	case q["watch"] == "true":
		enc := json.NewEncoder(w)
		if q["sendInitialEvents"] == "true" {
			for _, pod := range f.pods {
				pod.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
				_ = enc.Encode(map[string]any{"type": "ADDED", "object": pod})
			}
			_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv, Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}})
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	default:
		from, _ := strconv.Atoi(q["continue"])
		limit, _ := strconv.Atoi(q["limit"])
		to := len(f.pods)
		if limit > 0 && from+limit < to {
			to = from + limit
		}
		page := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: f.pods[from:to]}
		if to < len(f.pods) {
			page.Continue = strconv.Itoa(to)
		}
		_ = json.NewEncoder(w).Encode(page)
	}
}

// startFakePodCache starts a PodCache on api and waits for it to sync.
func startFakePodCache(t *testing.T, api *fakePodAPI, o PodCacheOptions) *PodCache {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	pods, err := NewPodCache(&rest.Config{Host: srv.URL}, &listSpy{}, o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pods.Start(ctx) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	syncCtx, cancelSync := context.WithTimeout(ctx, 10*time.Second)
	defer cancelSync()
	require.True(t, pods.WaitForCacheSync(syncCtx), "synced")
	return pods
}

// fakeWorkflowPods returns n small workflow pods in namespace argo, node IDs n0, n1, …
func fakeWorkflowPods(n int) []corev1.Pod {
	var pods []corev1.Pod
	for i := range n {
		pods = append(pods, *podWith("argo", fmt.Sprintf("p%d", i), "wf", fmt.Sprintf("n%d", i)))
	}
	return pods
}

// The initial list is streamed where the API server can (WatchList): one watch with
// sendInitialEvents, for workflow pods only, and no list at all.
func TestPodCacheStreamsTheInitialList(t *testing.T) {
	api := &fakePodAPI{pods: fakeWorkflowPods(5), streams: true}

	pods := startFakePodCache(t, api, PodCacheOptions{ListPageSize: 2})

	for i := range 5 {
		pod, err := pods.PodForNode(context.Background(), "argo", "wf", fmt.Sprintf("n%d", i))
		require.NoError(t, err)
		assert.Equal(t, rules.PodFacts(&api.pods[i]), pod)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	assert.Empty(t, api.lists, "lists")
	require.NotEmpty(t, api.watches)
	assert.Equal(t, "true", api.watches[0]["sendInitialEvents"])
	assert.Equal(t, rules.LabelWorkflow, api.watches[0]["labelSelector"], "workflow pods only")
}

// Where the API server cannot stream (it refuses sendInitialEvents, as kube-apiserver before
// 1.34 does by default), or streaming is turned off, the initial list is read in pages of
// ListPageSize, each continuing the last, at the latest resource version; then the cache watches
// from the list's version.
func TestPodCacheListsInPagesWhereItCannotStream(t *testing.T) {
	tests := map[string]struct {
		streams, disable bool
		wantStreamTries  int
	}{
		"a server that refuses streaming":   {wantStreamTries: 1},
		"streaming turned off in the cache": {streams: true, disable: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			api := &fakePodAPI{pods: fakeWorkflowPods(5), streams: tc.streams}

			pods := startFakePodCache(t, api, PodCacheOptions{ListPageSize: 2, DisableWatchList: tc.disable})

			for i := range 5 {
				pod, err := pods.PodForNode(context.Background(), "argo", "wf", fmt.Sprintf("n%d", i))
				require.NoError(t, err)
				assert.Equal(t, rules.PodFacts(&api.pods[i]), pod)
			}
			plainWatch := func() map[string]string {
				for _, q := range api.watches {
					if q["sendInitialEvents"] != "true" {
						return q
					}
				}
				return nil
			}
			require.Eventually(t, func() bool {
				api.mu.Lock()
				defer api.mu.Unlock()
				return plainWatch() != nil
			}, 10*time.Second, 10*time.Millisecond, "a watch after the list")
			api.mu.Lock()
			defer api.mu.Unlock()
			require.Len(t, api.lists, 3, "pages of 2 for 5 pods")
			for i, q := range api.lists {
				assert.Equal(t, "2", q["limit"], "page %d", i)
				assert.Equal(t, rules.LabelWorkflow, q["labelSelector"], "page %d", i)
				assert.Empty(t, q["resourceVersion"], "page %d: the latest version, which the watch cache pages", i)
				assert.Equal(t, []string{"", "2", "4"}[i], q["continue"], "page %d", i)
			}
			assert.Equal(t, "100", plainWatch()["resourceVersion"], "the watch starts from the list's version")
			tries := 0
			for _, q := range api.watches {
				if q["sendInitialEvents"] == "true" {
					tries++
				}
			}
			assert.Equal(t, tc.wantStreamTries, tries, "attempts to stream")
		})
	}
}

// argoPod is pod i of a cluster's worth of Argo workflow pods, every string its own allocation
// as after decoding: ten pods per workflow, init, wait and main containers each with the ~3 KB
// ARGO_TEMPLATE, Argo's labels, annotations and owner; every other pod terminated.
func argoPod(i int, template string) *corev1.Pod {
	wf := fmt.Sprintf("wf-%06d", i/10)
	hash := fmt.Sprintf("%010d", 1000000000+i*7919)
	created := metav1.NewTime(time.Unix(1714128600+int64(i), 0).Local())
	env := func(c string) []corev1.EnvVar {
		return []corev1.EnvVar{{Name: "ARGO_CONTAINER_NAME", Value: c}, {Name: "ARGO_TEMPLATE", Value: strings.Clone(template)},
			{Name: "ARGO_NODE_ID", Value: wf + "-" + hash}, {Name: "ARGO_WORKFLOW_NAME", Value: wf}}
	}
	container := func(name string, cmd ...string) corev1.Container {
		return corev1.Container{Name: strings.Clone(name), Image: "quay.io/argoproj/argoexec:v3.5.4", Command: cmd, Env: env(name)}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-main-%s", wf, hash), Namespace: strings.Clone("argo"), UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
			ResourceVersion: strconv.Itoa(1000 + i), CreationTimestamp: created,
			Labels: map[string]string{rules.LabelWorkflow: strings.Clone(wf), rules.LabelCompleted: "false"},
			Annotations: map[string]string{rules.AnnotationNodeID: wf + "-" + hash, "workflows.argoproj.io/node-name": wf + "[0].main",
				"kubectl.kubernetes.io/default-container": "main"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: wf,
				UID: types.UID(fmt.Sprintf("11111111-0000-4000-8000-%012d", i/10)), Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{container("init", "argoexec", "init")},
			Containers:     []corev1.Container{container("wait", "argoexec", "wait"), container("main", "/var/run/argo/argoexec", "emissary", "--", "sh", "-c", "echo hi")},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, c := range pod.Spec.Containers {
		st := corev1.ContainerStatus{Name: c.Name, Image: c.Image, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: created}}}
		if i%2 == 0 {
			st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: created,
				FinishedAt: metav1.NewTime(created.Add(time.Minute))}}
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, st)
	}
	if i%2 == 0 {
		pod.Status.Phase = corev1.PodSucceeded
	}
	return pod
}

// maxBytesPerCachedPod is the cache's budget of live heap per pod (issue 14). The cache keeps about
// 450 bytes, which with the GC's headroom (GOGC=50, see Run) keeps RSS at 100k workflow pods under
// 128 MiB (make scale); a trimmed corev1.Pod, as the cache first held, took 5 KB and more.
const maxBytesPerCachedPod = 1024

// The cache's memory per pod stays within its budget: 20k Argo-like pods, each reduced by the
// real transform and stored in the real store, grow the live heap by at most 1 KiB each.
func TestPodCacheFootprintPerPod(t *testing.T) {
	const n = 20000
	template := strings.Repeat("x", 3000)
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()

	s := newPodStore()
	for i := range n {
		require.NoError(t, s.Add(argoPod(i, template)))
	}

	after := heap()
	require.Equal(t, n, s.count())
	perPod := (float64(after) - float64(before)) / n
	t.Logf("live heap per cached pod: %.0f bytes (%d pods)", perPod, n)
	assert.LessOrEqual(t, perPod, float64(maxBytesPerCachedPod), "bytes of live heap per cached pod")
	runtime.KeepAlive(s)
}
