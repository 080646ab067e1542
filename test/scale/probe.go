package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// The caches a probe can build.
const (
	// cacheOurs is the webhook's own PodCache, built as webhook.Run builds it.
	cacheOurs = "ours"
	// cacheUntrimmed is a plain controller-runtime cache of whole pods with the same label
	// selector and a node-id index, looked up as the webhook did before it had its own cache.
	cacheUntrimmed = "untrimmed"
)

// probeResult is what a probe process prints: its memory once synced, how long the sync took,
// and the latency of lookups of random pods, timed in the process.
type probeResult struct {
	Cache    string        `json:"cache"`
	Pods     int           `json:"pods"`
	Sync     time.Duration `json:"sync"`
	RSSKiB   int64         `json:"rssKiB"`
	HWMKiB   int64         `json:"hwmKiB"`
	Lookups  int           `json:"lookups"`
	Misses   int           `json:"misses"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	AfterRSS int64         `json:"afterRSSKiB"`
}

// probeMain is the probe process: it builds one cache of the run's workflow pods, waits for it
// to sync, reads its own RSS, then times lookups of random pods from workers goroutines for the
// given duration and prints a probeResult as JSON.
func probeMain(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	which := fs.String("cache", cacheOurs, "ours or untrimmed")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	pods := fs.Int("pods", 0, "how many of the run's pods exist (0..pods-1)")
	duration := fs.Duration("duration", 5*time.Second, "how long to time lookups")
	workers := fs.Int("workers", 8, "concurrent lookups")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100 // as webhook.Run sets them
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var lookup func(ctx context.Context, n node) (*rules.Pod, error)
	start := time.Now()
	switch *which {
	case cacheOurs:
		c, err := webhook.NewPodCache(cfg, nil, webhook.PodCacheOptions{})
		if err != nil {
			return err
		}
		go func() { _ = c.Start(ctx) }()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("cache did not sync")
		}
		lookup = func(ctx context.Context, n node) (*rules.Pod, error) {
			return c.PodForNode(ctx, namespace, n.workflow, n.id)
		}
	case cacheUntrimmed:
		lookup, err = startUntrimmed(ctx, cfg)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown cache %q", *which)
	}
	res := probeResult{Cache: *which, Pods: *pods, Sync: time.Since(start)}
	if res.RSSKiB, res.HWMKiB, err = memory("self"); err != nil {
		return err
	}

	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(*duration)
	for range *workers {
		wg.Go(func() {
			var mine []time.Duration
			misses := 0
			for time.Now().Before(deadline) {
				n := nodeOf(rand.IntN(*pods))
				t0 := time.Now()
				pod, err := lookup(ctx, n)
				mine = append(mine, time.Since(t0))
				if err != nil || pod == nil || pod.Name != n.pod {
					misses++
				}
			}
			mu.Lock()
			all = append(all, mine...)
			res.Misses += misses
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	res.Lookups, res.P50, res.P99 = len(all), percentile(all, 0.50), percentile(all, 0.99)
	if res.AfterRSS, _, err = memory("self"); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// untrimmedIndex is the node-id index of the untrimmed cache.
const untrimmedIndex = "nodeID"

// startUntrimmed starts a controller-runtime cache of whole workflow pods, indexed by node ID,
// waits for it to sync and returns its lookup: a List through the index and the workflow label,
// then PodFacts of the match (as webhook.PodCache did over controller-runtime's cache).
func startUntrimmed(ctx context.Context, cfg *rest.Config) (func(context.Context, node) (*rules.Pod, error), error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	req, err := labels.NewRequirement(rules.LabelWorkflow, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.NewSelector().Add(*req)},
	}})
	if err != nil {
		return nil, err
	}
	if err := c.IndexField(ctx, &corev1.Pod{}, untrimmedIndex, func(o client.Object) []string {
		if id := o.GetAnnotations()[rules.AnnotationNodeID]; id != "" {
			return []string{id}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("cache did not sync")
	}
	return func(ctx context.Context, n node) (*rules.Pod, error) {
		var list corev1.PodList
		if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{untrimmedIndex: n.id},
			client.MatchingLabels{rules.LabelWorkflow: n.workflow}); err != nil {
			return nil, err
		}
		for i := range list.Items {
			if list.Items[i].Annotations[rules.AnnotationNodeID] == n.id {
				return rules.PodFacts(&list.Items[i]), nil
			}
		}
		return nil, nil
	}, nil
}

// percentile returns the p-quantile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}
