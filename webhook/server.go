package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// probeReadHeaderTimeout bounds how long the plain-HTTP server waits for request headers, so a
// slow client cannot hold connections open (Slowloris). Probes send their headers at once.
const probeReadHeaderTimeout = 10 * time.Second

// Run serves the webhook until ctx is cancelled, then shuts down gracefully: readiness turns off
// at once, the webhook keeps serving for ShutdownDelay, then drains in-flight requests.
func Run(ctx context.Context, o Options) error {
	o.setDefaults()
	if err := o.Validate(); err != nil {
		return err
	}
	cfg := o.RESTConfig
	if cfg == nil {
		var err error
		if cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig); err != nil {
			return fmt.Errorf("loading kubeconfig: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "argo-completion-webhook"
	// Set explicitly rather than client-go's 5/10: past the pod cache's list and watch (its own
	// client, with the same limits), requests are the fallback lookups of pods the cache has not
	// seen yet and B2's task-result reads, all bounded by --lookup-timeout. A burst of 100
	// absorbs a wave of new pods; a request over the budget waits, and past the lookup deadline
	// it is allowed unpatched.
	cfg.QPS, cfg.Burst = clientQPS, clientBurst

	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building scheme: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}
	pods, err := NewPodCache(cfg, direct, PodCacheOptions{Namespaces: o.Namespaces, Log: o.Log.WithName("pod-cache")})
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}

	if !o.DisableEvents {
		events, err := NewEventRecorder(cfg, "argo-completion-webhook")
		if err != nil {
			return err
		}
		defer events.Shutdown()
		o.events = events
	}
	return serve(ctx, o, pods, APITaskResults{Reader: direct}, pods)
}

// gcPercent is the webhook's GOGC unless the environment sets one. The pod cache is most of the
// heap and lives as long as the process, and Go's default (100) lets the heap grow to twice what
// is live before collecting: at 100k workflow pods that is RSS past 128 MiB, where 50 keeps it
// under (make scale, README "Pod cache at cluster scale"), for a few percent more GC CPU at the
// highest request rates.
const gcPercent = 50

// The API client's rate limits (see Run).
const (
	clientQPS   = 50
	clientBurst = 100
)

// podSource is the cache behind the pod lookups (PodCache), as serve drives it.
type podSource interface {
	Start(ctx context.Context) error
	WaitForCacheSync(ctx context.Context) bool
}

// serve runs the webhook server, the pod source and the plain-HTTP servers until ctx is
// cancelled, then shuts down: readiness off, ShutdownDelay of serving, drain.
func serve(ctx context.Context, o Options, pods PodLookup, taskResults TaskResultReader, src podSource) error {
	log := o.Log
	archiveSel, _ := o.archiveSelector() // validated by Run
	// A server with a registry of its own counts into it alone: its requests and its decisions.
	counters, gatherer := processCounters, prometheus.Gatherer(metrics.Registry)
	var requests *requestMetrics
	if o.Metrics != nil {
		var err error
		if counters, err = NewCounters(o.Metrics); err != nil {
			return err
		}
		if requests, err = newRequestMetrics(o.Metrics); err != nil {
			return err
		}
		gatherer = o.Metrics
	}
	hopts := HandlerOptions{
		Pods:          pods,
		TaskResults:   taskResults,
		Events:        o.events,
		Mode:          o.Mode,
		LookupTimeout: o.LookupTimeout,
		Log:           log,
		Counters:      counters,
		Workflow: rules.WorkflowConfig{
			Disabled:            o.DisableB2,
			Grace:               o.B2Grace,
			OrphanGrace:         DefaultB2OrphanGrace,
			ControllerUsernames: o.ControllerUsernames,
			Archive:             o.Archive,
			ArchiveSelector:     archiveSel,
		},
	}
	server := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.Host,
		Port:    o.Port,
		CertDir: o.CertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			if !o.EnableHTTP2 {
				c.NextProtos = []string{"http/1.1"}
			}
		}},
	})
	trHandler, wfHandler := NewTaskResultHandler(hopts), NewWorkflowHandler(hopts)
	if requests != nil {
		trHandler, wfHandler = requests.instrument(TaskResultPath, trHandler), requests.instrument(WorkflowPath, wfHandler)
	}
	server.Register(TaskResultPath, trHandler)
	server.Register(WorkflowPath, wfHandler)

	// Everything below stops when serveCtx is cancelled, after the shutdown delay.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	var synced, stopping atomic.Bool

	wg.Go(func() {
		if err := src.Start(serveCtx); err != nil {
			errc <- fmt.Errorf("pod cache: %w", err)
		}
	})
	wg.Go(func() {
		if src.WaitForCacheSync(serveCtx) {
			synced.Store(true)
			log.Info("pod cache synced")
		}
	})
	wg.Go(func() {
		if err := server.Start(serveCtx); err != nil {
			errc <- fmt.Errorf("webhook server: %w", err)
		}
	})

	started := server.StartedChecker()
	ready := func(r *http.Request) error {
		switch {
		case stopping.Load():
			return errors.New("shutting down")
		case !synced.Load():
			return errors.New("pod cache not synced")
		}
		return started(r)
	}
	plain, err := startPlainServers(o, ready, gatherer, log.WithName("probes"), errc)
	if err != nil {
		stopServing()
		wg.Wait()
		return err
	}
	log.Info("serving", "host", o.Host, "port", o.Port, "mode", o.Mode, "b2", !o.DisableB2, "b2Grace", o.B2Grace.String(), "health", o.HealthProbeBindAddress, "metrics", o.MetricsBindAddress)

	var runErr error
	select {
	case <-ctx.Done():
		stopping.Store(true)
		log.Info("shutdown requested: readiness off, still serving", "delay", o.ShutdownDelay.String())
		select {
		case <-time.After(o.ShutdownDelay):
		case runErr = <-errc:
		}
	case runErr = <-errc:
		stopping.Store(true)
	}
	stopServing()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range plain {
		_ = s.Shutdown(sctx)
	}
	log.Info("stopped")
	return runErr
}

// startPlainServers serves /healthz, /readyz and /metrics (what gatherer collects) over plain
// HTTP, on one listener when the two addresses are the same.
func startPlainServers(o Options, ready func(*http.Request) error, gatherer prometheus.Gatherer, log logr.Logger, errc chan<- error) ([]*http.Server, error) {
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	health.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	metricsHandler := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})

	muxes := map[string]*http.ServeMux{o.HealthProbeBindAddress: health}
	if a := o.MetricsBindAddress; a != "" && a != "0" {
		if a == o.HealthProbeBindAddress {
			health.Handle("/metrics", metricsHandler)
		} else {
			m := http.NewServeMux()
			m.Handle("/metrics", metricsHandler)
			muxes[a] = m
		}
	}
	var servers []*http.Server
	for addr, mux := range muxes {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, s := range servers {
				_ = s.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		s := &http.Server{Handler: mux, ReadHeaderTimeout: probeReadHeaderTimeout}
		servers = append(servers, s)
		go func() {
			if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "plain HTTP server failed", "address", addr)
				errc <- err
			}
		}()
	}
	return servers, nil
}
