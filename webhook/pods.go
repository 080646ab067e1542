package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// ErrNamespaceNotWatched is what PodCache.PodForNode answers, at once, for a namespace outside
// the cache's namespaces (--namespaces): the cache holds none of its pods and the webhook may
// not be allowed to read them, so there is nothing to look up and nothing has failed.
var ErrNamespaceNotWatched = errors.New("namespace not watched")

// DefaultPodListPageSize is the page size of the pod list when the API server cannot stream the
// initial list (WatchList). A page of 100 Argo pods is about 1 MB on the wire and 2.5 MB decoded
// (each container carries the ~3 KB ARGO_TEMPLATE), held only until its pods are reduced to
// entries, so the list's memory is a page's, not a cluster's; client-go's 500 would add ~10 MB
// of live heap, ~20 MB of RSS, for fewer round trips (1,000 for 100k pods, a few seconds).
const DefaultPodListPageSize = 100

// PodCacheOptions configure NewPodCache.
type PodCacheOptions struct {
	// Namespaces limits the cache to these namespaces (--namespaces); empty means all. A lookup in
	// any other namespace answers ErrNamespaceNotWatched without reading anything.
	Namespaces []string
	// ListPageSize is the page size of the initial list where the API server cannot stream it;
	// zero means DefaultPodListPageSize.
	ListPageSize int64
	// DisableWatchList makes the cache list pods in pages even where the API server could stream
	// them, as client-go's KUBE_FEATURE_WatchListClient=false does for every client of a process.
	DisableWatchList bool
	// Log receives the reflectors' errors (a forbidden list, a dropped watch).
	Log logr.Logger
}

// PodCache looks up a node's pod in a cache of workflow pods, falling back to a direct list from
// the API server on a miss (a pod the cache has not seen yet).
//
// It keeps, per pod, only the facts the rules read (see cachedPod): about 450 bytes of heap
// (TestPodCacheFootprintPerPod), against 5 KB and more for a trimmed corev1.Pod in an informer.
// controller-runtime's cache cannot hold a smaller type (its reads copy cached objects into a
// corev1.PodList), so the cache is its own store, filled by a client-go Reflector per watched
// namespace (one for all). The initial list is streamed (WatchList: a watch with
// sendInitialEvents, client-go's default since v0.35 and kube-apiserver's since 1.34), each pod
// reduced to its entry as it arrives; where the API server cannot stream, the list is read in
// pages of ListPageSize, each reduced before the next is read. Entries are indexed by namespace
// and node-id annotation.
type PodCache struct {
	direct client.Reader
	log    logr.Logger
	// stores holds the cached pods per watched namespace; with no namespaces, the one store is
	// under "" and holds every namespace's pods.
	stores     map[string]*podStore
	reflectors []*toolscache.Reflector
}

var _ PodLookup = (*PodCache)(nil)

// workflowPodSelector selects pods that belong to a workflow: the only pods the rules read.
func workflowPodSelector() labels.Selector {
	req, err := labels.NewRequirement(rules.LabelWorkflow, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant requirement; cannot fail
	}
	return labels.NewSelector().Add(*req)
}

// podCodecs decodes pods (protobuf or JSON) for the cache's REST client.
var podCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err) // registering built-in types cannot fail
	}
	return serializer.NewCodecFactory(s)
}()

// NewPodCache returns the cache of workflow pods read through cfg; direct is the uncached reader
// asked on a miss. Start runs it; WaitForCacheSync reports when every namespace's initial list
// is in.
func NewPodCache(cfg *rest.Config, direct client.Reader, o PodCacheOptions) (*PodCache, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	// Protobuf: smaller than JSON and faster to decode, and decoding is most of the initial
	// sync's CPU.
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	c.NegotiatedSerializer = podCodecs.WithoutConversion()
	// No client-side rate limit: each reflector has at most one request in flight (its watch, or
	// the next page of its list), and a limit would only stretch a paged list of 1,000 pages.
	c.QPS, c.Burst, c.RateLimiter = -1, 0, nil
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("creating the pod cache's client: %w", err)
	}
	pageSize := o.ListPageSize
	if pageSize <= 0 {
		pageSize = DefaultPodListPageSize
	}
	return newPodCache(func(namespace string) toolscache.ListerWatcher {
		return &podListWatch{client: rc, namespace: namespace, selector: workflowPodSelector().String(),
			pageSize: pageSize, noWatchList: o.DisableWatchList}
	}, direct, o), nil
}

// newPodCache builds the stores and their reflectors, one per watched namespace (one for all),
// each reading through listWatch(namespace).
func newPodCache(listWatch func(namespace string) toolscache.ListerWatcher, direct client.Reader, o PodCacheOptions) *PodCache {
	p := &PodCache{direct: direct, log: o.Log, stores: map[string]*podStore{}}
	namespaces := o.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		if _, dup := p.stores[ns]; dup {
			continue
		}
		s := newPodStore()
		p.stores[ns] = s
		name := "pod-cache"
		if ns != metav1.NamespaceAll {
			name += "/" + ns
		}
		log := o.Log
		p.reflectors = append(p.reflectors, toolscache.NewReflectorWithOptions(listWatch(ns), &corev1.Pod{}, s,
			toolscache.ReflectorOptions{Name: name, TypeDescription: "workflow pods", Logger: &log}))
	}
	return p
}

// Start runs the reflectors until ctx is cancelled; call it once. The cache keeps what it holds
// afterwards.
func (p *PodCache) Start(ctx context.Context) error {
	ctx = logr.NewContext(ctx, p.log)
	var wg sync.WaitGroup
	for _, r := range p.reflectors {
		wg.Go(func() { r.RunWithContext(ctx) })
	}
	wg.Wait()
	return nil
}

// WaitForCacheSync waits until every namespace's initial list is in the cache, and reports
// whether it is (false when ctx ends first).
func (p *PodCache) WaitForCacheSync(ctx context.Context) bool {
	for _, s := range p.stores {
		select {
		case <-s.synced:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// PodForNode implements PodLookup. It answers from the cache through the node-id index, asks
// direct only on a miss, and answers ErrNamespaceNotWatched for a namespace outside the cache's.
// Until the cache has synced it waits for it, within ctx.
func (p *PodCache) PodForNode(ctx context.Context, namespace, workflow, nodeID string) (*rules.Pod, error) {
	s, ok := p.stores[metav1.NamespaceAll]
	if !ok {
		// The direct reader may lack the RBAC outside the watched namespaces: answer without
		// asking it.
		if s, ok = p.stores[namespace]; !ok {
			return nil, fmt.Errorf("%w: %s", ErrNamespaceNotWatched, namespace)
		}
	}
	select {
	case <-s.synced:
	case <-ctx.Done():
		return nil, fmt.Errorf("pod cache not synced: %w", ctx.Err())
	}
	if pod := s.podForNode(namespace, workflow, nodeID); pod != nil {
		return pod, nil
	}
	if p.direct == nil {
		return nil, nil
	}
	// Miss: the cache may lag the pod's creation; ask the API server.
	var list corev1.PodList
	if err := p.direct.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{rules.LabelWorkflow: workflow}); err != nil {
		return nil, fmt.Errorf("listing pods of workflow %s: %w", workflow, err)
	}
	for i := range list.Items {
		if list.Items[i].Annotations[rules.AnnotationNodeID] == nodeID {
			return rules.PodFacts(&list.Items[i]), nil
		}
	}
	return nil, nil
}

// cachedPod is all the cache keeps of a pod: its key, the two values it is looked up by, and
// PodFacts. Values many pods share (namespace, workflow, owner UID, phase, container names) are
// interned handles, 8 bytes each. Entries are immutable once stored, except next.
type cachedPod struct {
	namespace   unique.Handle[string]
	name        string
	workflow    unique.Handle[string] // the workflow label
	nodeID      string                // the node-id annotation; "" is never looked up, so never stored
	workflowUID unique.Handle[string]
	phase       unique.Handle[string]
	created     time.Time
	containers  []cachedContainer
	// next is the following pod with the same namespace and node ID (usually none), under the
	// store's lock.
	next *cachedPod
}

// cachedContainer is a Container with its name interned.
type cachedContainer struct {
	name         unique.Handle[string]
	terminated   bool
	terminatedAt time.Time
}

// newCachedPod reduces pod to its entry.
func newCachedPod(pod *corev1.Pod) *cachedPod {
	f := rules.PodFacts(pod)
	c := &cachedPod{
		namespace:   unique.Make(pod.Namespace),
		name:        strings.Clone(pod.Name),
		workflow:    unique.Make(pod.Labels[rules.LabelWorkflow]),
		nodeID:      strings.Clone(pod.Annotations[rules.AnnotationNodeID]),
		workflowUID: unique.Make(f.WorkflowUID),
		phase:       unique.Make(f.Phase),
		created:     f.Created,
		containers:  make([]cachedContainer, len(f.Containers)),
	}
	for i, ct := range f.Containers {
		c.containers[i] = cachedContainer{name: unique.Make(ct.Name), terminated: ct.Terminated, terminatedAt: ct.TerminatedAt}
	}
	return c
}

// facts returns PodFacts of the pod c was made from, as a copy the caller may keep.
func (c *cachedPod) facts() *rules.Pod {
	p := &rules.Pod{Name: c.name, WorkflowUID: c.workflowUID.Value(), Created: c.created, Phase: c.phase.Value(),
		Containers: make([]rules.Container, len(c.containers))}
	for i, ct := range c.containers {
		p.Containers[i] = rules.Container{Name: ct.name.Value(), Terminated: ct.terminated, TerminatedAt: ct.terminatedAt}
	}
	return p
}

// GetObjectKind and DeepCopyObject make an entry a runtime.Object, the item type of the paged
// list (cachedPodList) the reflector reads.
func (c *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (c *cachedPod) DeepCopyObject() runtime.Object {
	cp := *c
	cp.containers = slices.Clone(c.containers)
	cp.next = nil
	return &cp
}

// toCachedPod is the cache's transform: the reflector applies it to each pod of a streamed
// initial list as it arrives, and the store to every pod it is given.
func toCachedPod(obj any) (any, error) {
	switch o := obj.(type) {
	case *cachedPod:
		return o, nil
	case *corev1.Pod:
		return newCachedPod(o), nil
	}
	return nil, fmt.Errorf("pod cache: unexpected %T", obj)
}

// podKey identifies a stored pod.
type podKey struct {
	namespace unique.Handle[string]
	name      string
}

// nodeKey is the index key: a pod's namespace and node-id annotation.
type nodeKey struct {
	namespace unique.Handle[string]
	nodeID    string
}

// podStore holds one reflector's pods, by name and by node ID. It implements the reflector's
// store (TransformingStore, so a streamed initial list is reduced pod by pod).
type podStore struct {
	mu     sync.RWMutex
	byName map[podKey]*cachedPod
	byNode map[nodeKey]*cachedPod // the first of a chain linked by next
	// synced is closed by the first Replace: the initial list is in.
	synced   chan struct{}
	syncOnce sync.Once
}

var _ toolscache.TransformingStore = (*podStore)(nil)

func newPodStore() *podStore {
	return &podStore{byName: map[podKey]*cachedPod{}, byNode: map[nodeKey]*cachedPod{}, synced: make(chan struct{})}
}

// podForNode returns the facts of the pod of workflow in namespace whose node-id annotation is
// nodeID, or nil when the store holds none.
func (s *podStore) podForNode(namespace, workflow, nodeID string) *rules.Pod {
	key := nodeKey{unique.Make(namespace), nodeID}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := s.byNode[key]; c != nil; c = c.next {
		if c.workflow.Value() == workflow {
			return c.facts()
		}
	}
	return nil
}

// Transformer implements TransformingStore.
func (s *podStore) Transformer() toolscache.TransformFunc { return toCachedPod }

// Add implements ReflectorStore.
func (s *podStore) Add(obj any) error { return s.Update(obj) }

// Update implements ReflectorStore.
func (s *podStore) Update(obj any) error {
	o, err := toCachedPod(obj)
	if err != nil {
		return err
	}
	c := o.(*cachedPod)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(podKey{c.namespace, c.name})
	s.insert(c)
	return nil
}

// Delete implements ReflectorStore.
func (s *podStore) Delete(obj any) error {
	var key podKey
	switch o := obj.(type) {
	case *cachedPod:
		key = podKey{o.namespace, o.name}
	case *corev1.Pod:
		key = podKey{unique.Make(o.Namespace), o.Name}
	case toolscache.DeletedFinalStateUnknown:
		ns, name, err := toolscache.SplitMetaNamespaceKey(o.Key)
		if err != nil {
			return err
		}
		key = podKey{unique.Make(ns), name}
	default:
		return fmt.Errorf("pod cache: unexpected %T", obj)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(key)
	return nil
}

// Replace implements ReflectorStore: the reflector's (re)list, streamed or paged. The first one
// marks the store synced.
func (s *podStore) Replace(list []any, _ string) error {
	byName := make(map[podKey]*cachedPod, len(list))
	byNode := make(map[nodeKey]*cachedPod, len(list))
	fresh := &podStore{byName: byName, byNode: byNode}
	for _, obj := range list {
		o, err := toCachedPod(obj)
		if err != nil {
			return err
		}
		c := o.(*cachedPod)
		fresh.remove(podKey{c.namespace, c.name})
		fresh.insert(c)
	}
	s.mu.Lock()
	s.byName, s.byNode = byName, byNode
	s.mu.Unlock()
	s.syncOnce.Do(func() { close(s.synced) })
	return nil
}

// Resync implements ReflectorStore; there is nothing to resync.
func (s *podStore) Resync() error { return nil }

// insert stores c, which no stored pod has the key of. A pod without a node ID is never looked
// up, so it is not kept. Called with the lock held.
func (s *podStore) insert(c *cachedPod) {
	c.next = nil
	if c.nodeID == "" {
		return
	}
	s.byName[podKey{c.namespace, c.name}] = c
	nk := nodeKey{c.namespace, c.nodeID}
	c.next = s.byNode[nk]
	s.byNode[nk] = c
}

// remove drops the pod stored under key, if any. Called with the lock held.
func (s *podStore) remove(key podKey) {
	old, ok := s.byName[key]
	if !ok {
		return
	}
	delete(s.byName, key)
	nk := nodeKey{old.namespace, old.nodeID}
	if head := s.byNode[nk]; head == old {
		if old.next == nil {
			delete(s.byNode, nk)
		} else {
			s.byNode[nk] = old.next
		}
	} else {
		for c := head; c != nil; c = c.next {
			if c.next == old {
				c.next = old.next
				break
			}
		}
	}
	old.next = nil
}

// count returns how many pods the store holds.
func (s *podStore) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byName)
}

// podListWatch lists and watches one namespace's workflow pods (all namespaces' for "").
type podListWatch struct {
	client    rest.Interface
	namespace string
	selector  string
	pageSize  int64
	// noWatchList makes the reflector list instead of streaming the initial list.
	noWatchList bool
}

var _ toolscache.ListerWatcherWithContext = (*podListWatch)(nil)

// IsWatchListSemanticsUnSupported tells the reflector whether to stream its initial list.
func (lw *podListWatch) IsWatchListSemanticsUnSupported() bool { return lw.noWatchList }

// List implements ListerWatcher.
func (lw *podListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

// Watch implements ListerWatcher.
func (lw *podListWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

// ListWithContext reads the pods in pages of pageSize, whatever the reflector asked, and returns
// their entries in one list. Each page is reduced before the next is read, so only one page of
// whole pods is ever held. resourceVersion "0" (any version, which the watch cache serves whole,
// ignoring the limit) becomes "" (the latest), which it serves in pages.
func (lw *podListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	opts.LabelSelector = lw.selector
	opts.Limit = lw.pageSize
	opts.Continue = ""
	if opts.ResourceVersion == "0" {
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	out := &cachedPodList{}
	for {
		var page corev1.PodList
		err := lw.client.Get().Namespace(lw.namespace).Resource("pods").
			VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(&page)
		if err != nil {
			return nil, err
		}
		out.ResourceVersion = page.ResourceVersion
		for i := range page.Items {
			out.Items = append(out.Items, newCachedPod(&page.Items[i]))
		}
		if page.Continue == "" {
			return out, nil
		}
		// The continue token carries the list's resource version.
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
	}
}

// WatchWithContext implements ListerWatcherWithContext; with sendInitialEvents it streams the
// initial list.
func (lw *podListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	opts.LabelSelector = lw.selector
	return lw.client.Get().Namespace(lw.namespace).Resource("pods").
		VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// cachedPodList is a listed set of pods as entries: what podListWatch returns to the reflector.
type cachedPodList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []*cachedPod
}

// DeepCopyObject implements runtime.Object.
func (l *cachedPodList) DeepCopyObject() runtime.Object {
	cp := &cachedPodList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&cp.ListMeta)
	for _, c := range l.Items {
		cp.Items = append(cp.Items, c.DeepCopyObject().(*cachedPod))
	}
	return cp
}
