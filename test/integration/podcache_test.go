package integration

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// errDirectRefused is what a refusing directReader answers.
var errDirectRefused = errors.New("direct read refused by the test")

// directReader stands in for the pod cache's uncached reader: it counts the reads that reach it
// and refuses them when refuse is set, or passes them to the API server.
type directReader struct {
	refuse bool
	calls  atomic.Int32
}

var _ client.Reader = (*directReader)(nil)

func (d *directReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	d.calls.Add(1)
	if d.refuse {
		return errDirectRefused
	}
	return admin.Get(ctx, key, obj, opts...)
}

func (d *directReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	d.calls.Add(1)
	if d.refuse {
		return errDirectRefused
	}
	return admin.List(ctx, list, opts...)
}

// unindexedCache is a cache on which registering an index does nothing: NewPodCache accepts it,
// and a lookup that goes through the node-id index finds no such index.
type unindexedCache struct{ cache.Cache }

func (unindexedCache) IndexField(context.Context, client.Object, string, client.IndexerFunc) error {
	return nil
}

// podCache is a pod lookup over an informer cache started on the real API server as Run builds
// it (webhook.PodCacheOptions, webhook.NewPodCache).
type podCache struct {
	*webhook.PodCache
	informer cache.Cache
	stop     func()
}

// startPodCache starts the cache of workflow pods in namespaces (none: all) with direct as the
// miss fallback, and waits for it to sync. wrap, when set, wraps the cache NewPodCache is given.
// stop ends the informer and waits for it; the cache keeps answering from what it holds, so a
// pod created afterwards is one the informer has not seen yet.
func startPodCache(t *testing.T, namespaces []string, direct client.Reader, wrap func(cache.Cache) cache.Cache) *podCache {
	t.Helper()
	opts := webhook.PodCacheOptions(namespaces)
	opts.Scheme = scheme
	informer, err := cache.New(adminCfg, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	indexed := informer
	if wrap != nil {
		indexed = wrap(informer)
	}
	pods, err := webhook.NewPodCache(ctx, indexed, direct, namespaces...)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- informer.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-done, "pod cache stopped cleanly")
		})
	}
	t.Cleanup(stop)
	syncCtx, cancelSync := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSync()
	require.True(t, informer.WaitForCacheSync(syncCtx), "pod cache syncs")
	return &podCache{PodCache: pods, informer: informer, stop: stop}
}

// waitCached waits until the informer holds each pod.
func (c *podCache) waitCached(t *testing.T, pods ...*corev1.Pod) {
	t.Helper()
	for _, pod := range pods {
		require.Eventually(t, func() bool {
			return c.informer.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{}) == nil
		}, 10*time.Second, 20*time.Millisecond, "informer holds pod %s/%s", pod.Namespace, pod.Name)
	}
}

// sibling is another Pod node of n's workflow: same workflow label, another node ID.
func sibling(n node, hash string) node {
	n.id = n.workflow + "-" + hash
	n.pod = n.workflow + "-main-" + hash
	return n
}

// Lookups of pods the informer holds are answered by the informer through the node-id index,
// without one read from the API server; only a pod the informer has not seen reaches the direct
// reader, and what that reader answers (its error included) is the lookup's answer.
func TestPodCacheAnswersFromTheInformerAndFallsBackOnlyOnAMiss(t *testing.T) {
	ctx := context.Background()
	direct := &directReader{}
	pods := startPodCache(t, nil, direct, nil)
	n := newNode(t, "podcache", true)
	sib := sibling(n, "1234567890")
	// Another workflow's pod carrying n's node ID: the index finds both, the workflow label one.
	impostor := newNode(t, "podcache-impostor", false)
	impostor.id = n.id
	deleted := sibling(n, "2222222222")
	created := map[string]*corev1.Pod{} // by name, as the API server answered each create
	for _, c := range []node{n, sib, impostor, deleted} {
		created[c.pod] = createPod(t, argoNS, c)
		pods.waitCached(t, created[c.pod])
	}

	// Freeze the informer, then change the API server behind it: a pod it never sees, and a pod
	// it still holds that is gone from the API server.
	pods.stop()
	late := sibling(n, "3333333333")
	created[late.pod] = createPod(t, argoNS, late)
	require.NoError(t, admin.Delete(ctx, created[deleted.pod]))

	tests := map[string]struct {
		workflow    string // "": n's
		nodeID      string
		refuse      bool // the direct reader refuses every read
		want        *node
		wantErr     error
		wantDirects int32
	}{
		"a cached pod is answered by the informer": {
			nodeID: n.id, refuse: true, want: &n,
		},
		"a cached pod of the same workflow is answered by its own node ID": {
			nodeID: sib.id, refuse: true, want: &sib,
		},
		"another workflow's pod with the same node ID is answered for that workflow only": {
			workflow: impostor.workflow, nodeID: n.id, refuse: true, want: &impostor,
		},
		"a cached pod deleted from the API server is still answered by the informer": {
			nodeID: deleted.id, refuse: true, want: &deleted,
		},
		"a pod the informer has not seen falls back to the direct reader": {
			nodeID: late.id, want: &late, wantDirects: 1,
		},
		"the direct reader's error surfaces from a miss": {
			nodeID: late.id, refuse: true, wantErr: errDirectRefused, wantDirects: 1,
		},
		"a node without a pod falls back to the direct reader and finds none": {
			nodeID: n.workflow + "-4444444444", wantDirects: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			direct.refuse = tc.refuse
			direct.calls.Store(0)
			wf := tc.workflow
			if wf == "" {
				wf = n.workflow
			}

			pod, err := pods.PodForNode(ctx, argoNS, wf, tc.nodeID)

			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			if tc.want == nil {
				assert.Nil(t, pod)
			} else if assert.NotNil(t, pod) {
				assert.Equal(t, tc.want.pod, pod.Name)
				assert.Equal(t, webhook.PodFacts(created[tc.want.pod]), pod, "the facts of the pod the API server holds")
			}
			assert.Equal(t, tc.wantDirects, direct.calls.Load(), "reads that reached the direct reader")
		})
	}
}

// Lookups go through the node-id index: on a cache where registering it did nothing, a lookup of
// a pod the informer holds fails, and the direct reader is not asked.
func TestPodCacheLookupsGoThroughTheNodeIDIndex(t *testing.T) {
	direct := &directReader{refuse: true}
	pods := startPodCache(t, nil, direct, func(c cache.Cache) cache.Cache { return unindexedCache{c} })
	n := newNode(t, "podcache-unindexed", false)
	pods.waitCached(t, createPod(t, argoNS, n))

	pod, err := pods.PodForNode(context.Background(), argoNS, n.workflow, n.id)

	assert.Nil(t, pod)
	assert.ErrorContains(t, err, "listing cached pods")
	assert.ErrorContains(t, err, "does not exist", "the node-id index is missing")
	assert.Zero(t, direct.calls.Load(), "reads that reached the direct reader")
}

// With --namespaces, a lookup in another namespace answers ErrNamespaceNotWatched at once — not
// the informer's "unknown namespace" error, and not a read from the API server — while lookups in
// a watched namespace are answered by the informer.
func TestPodCacheWithNamespacesAnswersNotWatchedForTheOthers(t *testing.T) {
	ctx := context.Background()
	const watched, unwatched = "podcache-watched", "podcache-unwatched"
	for _, ns := range []string{watched, unwatched} {
		require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	direct := &directReader{refuse: true}
	pods := startPodCache(t, []string{watched}, direct, nil)
	n := newNode(t, "podcache-namespaces", false)
	pods.waitCached(t, createPod(t, watched, n))
	createPod(t, unwatched, n)

	tests := map[string]struct {
		namespace string
		wantPod   string
		wantErr   error
	}{
		"a pod in the watched namespace is answered by the informer": {
			namespace: watched, wantPod: n.pod,
		},
		"a namespace outside the set is not watched": {
			namespace: unwatched, wantErr: webhook.ErrNamespaceNotWatched,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			direct.calls.Store(0)

			pod, err := pods.PodForNode(ctx, tc.namespace, n.workflow, n.id)

			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.Nil(t, pod)
			} else if assert.NoError(t, err) && assert.NotNil(t, pod) {
				assert.Equal(t, tc.wantPod, pod.Name)
			}
			assert.Zero(t, direct.calls.Load(), "reads that reached the direct reader")
		})
	}
}
