package integration

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
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

// errCacheOnly is what a lookup's direct reader answers while a test asks the cache alone.
var errCacheOnly = errors.New("cache only")

// gatedReader passes reads to next unless closed, when it refuses them without passing them on:
// with it closed, a lookup answers only from the cache.
type gatedReader struct {
	next   client.Reader
	closed atomic.Bool
}

func (g *gatedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if g.closed.Load() {
		return errCacheOnly
	}
	return g.next.Get(ctx, key, obj, opts...)
}

func (g *gatedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if g.closed.Load() {
		return errCacheOnly
	}
	return g.next.List(ctx, list, opts...)
}

// podCache is the webhook's pod cache (webhook.NewPodCache, as Run builds it) started on the real
// API server.
type podCache struct {
	*webhook.PodCache
	gate *gatedReader
	stop func()
	// requests records the query of each request the cache sent.
	requests *requestLog
}

// requestLog records the queries of the requests that go through its round tripper.
type requestLog struct {
	mu      sync.Mutex
	queries []url.Values
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.queries = append(l.queries, r.URL.Query())
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

// initialList splits the recorded requests into lists and streamed lists (watches with
// sendInitialEvents).
func (l *requestLog) initialList() (lists, streams []url.Values) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.queries {
		switch {
		case q.Get("watch") != "true":
			lists = append(lists, q)
		case q.Get("sendInitialEvents") == "true":
			streams = append(streams, q)
		}
	}
	return lists, streams
}

// apiServerStreams reports whether the suite's kube-apiserver serves streamed lists (WatchList) by
// default: from 1.34 (1.32 did, 1.33 did not); the minimum supported, 1.30, does not.
func apiServerStreams() bool {
	return version.MustParseGeneric(controlplane.KubernetesVersion()).AtLeast(version.MajorMinor(1, 34))
}

// The two ways the cache reads its initial list: streamed (WatchList, which kube-apiserver 1.37
// serves) and in pages (what it does where the API server cannot stream), in pages of 2 so that
// even a few pods take several.
var initialLists = map[string]webhook.PodCacheOptions{
	"streamed": {},
	"paged":    {DisableWatchList: true, ListPageSize: 2},
}

// startPodCache starts the cache of workflow pods with o (namespaces, how it lists) and direct
// as the miss fallback, and waits for it to sync. stop ends it and waits for it; the cache keeps
// answering from what it holds, so a pod created afterwards is one it has not seen.
func startPodCache(t *testing.T, o webhook.PodCacheOptions, direct client.Reader) *podCache {
	t.Helper()
	gate := &gatedReader{next: direct}
	requests := &requestLog{}
	cfg := rest.CopyConfig(adminCfg)
	cfg.Wrap(requests.wrap)
	pods, err := webhook.NewPodCache(cfg, gate, o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pods.Start(ctx) }()
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
	require.True(t, pods.WaitForCacheSync(syncCtx), "pod cache syncs")
	return &podCache{PodCache: pods, gate: gate, stop: stop, requests: requests}
}

// waitCached waits until the cache answers for each pod (by its namespace, workflow label and
// node-id annotation) on its own, with the direct reader shut.
func (c *podCache) waitCached(t *testing.T, pods ...*corev1.Pod) {
	t.Helper()
	c.gate.closed.Store(true)
	defer c.gate.closed.Store(false)
	for _, pod := range pods {
		require.Eventually(t, func() bool {
			got, err := c.PodForNode(context.Background(), pod.Namespace, pod.Labels[rules.LabelWorkflow], pod.Annotations[rules.AnnotationNodeID])
			return err == nil && got != nil && got.Name == pod.Name
		}, 10*time.Second, 20*time.Millisecond, "cache holds pod %s/%s", pod.Namespace, pod.Name)
	}
}

// sibling is another Pod node of n's workflow: same workflow label, another node ID.
func sibling(n node, hash string) node {
	n.id = n.workflow + "-" + hash
	n.pod = n.workflow + "-main-" + hash
	return n
}

// Lookups of pods the cache holds are answered by the cache through the node-id index, without
// one read from the API server, whether the pod came in the initial list (streamed or paged) or
// through the watch; only a pod the cache has not seen reaches the direct reader, and what that
// reader answers (its error included) is the lookup's answer.
func TestPodCacheAnswersFromTheCacheAndFallsBackOnlyOnAMiss(t *testing.T) {
	for mode, opts := range initialLists {
		t.Run(mode, func(t *testing.T) { testPodCacheAnswers(t, mode, opts) })
	}
}

func testPodCacheAnswers(t *testing.T, mode string, opts webhook.PodCacheOptions) {
	ctx := context.Background()
	n := newNode(t, "podcache-"+mode, true)
	sib := sibling(n, "1234567890")
	// Another workflow's pod carrying n's node ID: the index finds both, the workflow label one.
	impostor := newNode(t, "podcache-impostor-"+mode, false)
	impostor.id = n.id
	deleted := sibling(n, "2222222222")
	created := map[string]*corev1.Pod{} // by name, as the API server answered each create
	for _, c := range []node{n, sib, impostor, deleted} {
		created[c.pod] = createPod(t, argoNS, c)
	}
	// The initial list brings those; the watch brings this one.
	watched := sibling(n, "5555555555")
	direct := &directReader{}
	pods := startPodCache(t, opts, direct)
	created[watched.pod] = createPod(t, argoNS, watched)
	for _, pod := range created {
		pods.waitCached(t, pod)
	}
	lists, streams := pods.requests.initialList()
	if opts.DisableWatchList {
		assert.Empty(t, streams, "no streamed list")
	} else {
		assert.NotEmpty(t, streams, "a streamed list (WatchList) tried")
	}
	if !opts.DisableWatchList && apiServerStreams() {
		assert.Empty(t, lists, "kube-apiserver %s streams the initial list: no list", controlplane.KubernetesVersion())
	} else {
		require.NotEmpty(t, lists, "the initial list in pages")
		for i, q := range lists {
			assert.Equal(t, i > 0, q.Get("continue") != "", "page %d continues the list", i)
			assert.Equal(t, rules.LabelWorkflow, q.Get("labelSelector"), "page %d: workflow pods only", i)
		}
		if opts.DisableWatchList {
			assert.GreaterOrEqual(t, len(lists), 2, "pages of 2 for at least the test's 4 pods")
			assert.Equal(t, "2", lists[0].Get("limit"))
		}
	}

	// Freeze the cache, then change the API server behind it: a pod it never sees, and a pod it
	// still holds that is gone from the API server.
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
		"a cached pod is answered by the cache": {
			nodeID: n.id, refuse: true, want: &n,
		},
		"a cached pod of the same workflow is answered by its own node ID": {
			nodeID: sib.id, refuse: true, want: &sib,
		},
		"another workflow's pod with the same node ID is answered for that workflow only": {
			workflow: impostor.workflow, nodeID: n.id, refuse: true, want: &impostor,
		},
		"a pod the watch delivered is answered by the cache": {
			nodeID: watched.id, refuse: true, want: &watched,
		},
		"a cached pod deleted from the API server is still answered by the cache": {
			nodeID: deleted.id, refuse: true, want: &deleted,
		},
		"a pod the cache has not seen falls back to the direct reader": {
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
				assert.Equal(t, rules.PodFacts(created[tc.want.pod]), pod, "the facts of the pod the API server holds")
			}
			assert.Equal(t, tc.wantDirects, direct.calls.Load(), "reads that reached the direct reader")
		})
	}
}

// Lookups go through the node-id index, which follows the pod: when its node-id annotation
// changes on the API server, the cache answers for the new node ID without a read, and the old
// one is a miss that reaches the direct reader.
func TestPodCacheIndexFollowsTheNodeIDAnnotation(t *testing.T) {
	ctx := context.Background()
	direct := &directReader{refuse: true}
	pods := startPodCache(t, webhook.PodCacheOptions{}, direct)
	n := newNode(t, "podcache-reindexed", false)
	pod := createPod(t, argoNS, n)
	pods.waitCached(t, pod)
	moved := sibling(n, "6666666666")
	before := pod.DeepCopy()
	pod.Annotations[rules.AnnotationNodeID] = moved.id
	require.NoError(t, admin.Patch(ctx, pod, client.MergeFrom(before)))
	pods.waitCached(t, pod)

	tests := map[string]struct {
		nodeID      string
		wantPod     string
		wantErr     error
		wantDirects int32
	}{
		"the new node ID is answered by the cache": {nodeID: moved.id, wantPod: n.pod},
		"the old node ID is a miss":                {nodeID: n.id, wantErr: errDirectRefused, wantDirects: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			direct.calls.Store(0)

			got, err := pods.PodForNode(ctx, argoNS, n.workflow, tc.nodeID)

			if tc.wantErr != nil {
				assert.ErrorIs(t, err, tc.wantErr)
				assert.Nil(t, got)
			} else if assert.NoError(t, err) && assert.NotNil(t, got) {
				assert.Equal(t, tc.wantPod, got.Name)
			}
			assert.Equal(t, tc.wantDirects, direct.calls.Load(), "reads that reached the direct reader")
		})
	}
}

// With --namespaces, a lookup in another namespace answers ErrNamespaceNotWatched at once — not
// an error from the cache, and not a read from the API server — while lookups in a watched
// namespace are answered by the cache.
func TestPodCacheWithNamespacesAnswersNotWatchedForTheOthers(t *testing.T) {
	ctx := context.Background()
	const watched, unwatched = "podcache-watched", "podcache-unwatched"
	for _, ns := range []string{watched, unwatched} {
		require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	direct := &directReader{refuse: true}
	pods := startPodCache(t, webhook.PodCacheOptions{Namespaces: []string{watched}}, direct)
	n := newNode(t, "podcache-namespaces", false)
	pods.waitCached(t, createPod(t, watched, n))
	createPod(t, unwatched, n)

	tests := map[string]struct {
		namespace string
		wantPod   string
		wantErr   error
	}{
		"a pod in the watched namespace is answered by the cache": {
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
