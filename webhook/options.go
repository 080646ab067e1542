package webhook

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// Options configure Run. BindFlags registers them as command-line flags; zero values take the
// defaults below.
type Options struct {
	// CertDir holds tls.crt and tls.key; they are re-read when they change (certwatcher).
	CertDir string
	// Host is the webhook's listen address; "" means all interfaces.
	Host string
	// Port is the webhook's TLS port.
	Port int
	// MetricsBindAddress serves /metrics over plain HTTP; "0" disables it.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz over plain HTTP.
	HealthProbeBindAddress string
	// Kubeconfig is the path of a kubeconfig for the pod cache; "" means in-cluster.
	Kubeconfig string
	// RESTConfig, when set, is used instead of Kubeconfig (tests).
	RESTConfig *rest.Config
	// Mode is enforce or audit.
	Mode Mode
	// EnableHTTP2 turns HTTP/2 on; it is off by default (CVE-2023-44487, rapid reset).
	EnableHTTP2 bool
	// Archive says the workflow controller archives workflows (persistence.archive: true), so
	// rule B2 also sets workflow-archiving-status=Pending.
	Archive bool
	// ArchiveLabelSelector is the controller's persistence.archiveLabelSelector, if any.
	ArchiveLabelSelector string
	// DisableB2 turns rule B2 (completing a v3.5.3–v3.5.5 Workflow in the stuck shape) off.
	DisableB2 bool
	// B2Grace is how long the executors of an incomplete entry must have been terminated (or its
	// node finished, when the pod is gone) before rule B2 acts.
	B2Grace time.Duration
	// ControllerUsernames are the users whose Workflow updates rule B2 acts on; empty means any.
	ControllerUsernames []string
	// Namespaces limits the pod cache to these namespaces; empty means all.
	Namespaces []string
	// LookupTimeout bounds the pod lookups of one request.
	LookupTimeout time.Duration
	// ShutdownDelay is how long the server keeps serving after SIGTERM with readiness off, so
	// the API server stops sending to this replica before it goes away.
	ShutdownDelay time.Duration
	// DisableEvents turns off the Events the webhook records on Workflows it acts on.
	DisableEvents bool
	// Log is the logger; the zero logger discards.
	Log logr.Logger
	// Metrics, when set, is a registry of this server's own, for a process that runs several
	// servers (tests): /metrics then serves it alone, with this server's request counts and
	// latencies (controller-runtime's controller_runtime_webhook_* series, counted here too) and
	// its own argo_completion_webhook_* counters. Use a fresh registry for each Run. Nil, as in
	// production, serves controller-runtime's registry (metrics.Registry), where the webhook's
	// counters are registered once for the process.
	Metrics *prometheus.Registry

	// events records Events (set by Run unless DisableEvents).
	events Recorder
}

// Defaults. The webhook's timeoutSeconds is 2 s; a lookup deadline of 750 ms leaves room for
// the TLS handshake and the API server's own work. The 10 s shutdown delay covers endpoint
// propagation to kube-proxy and the API server's connection reuse.
const (
	DefaultPort                   = 9443
	DefaultMetricsBindAddress     = ":8080"
	DefaultHealthProbeBindAddress = ":8081"
	DefaultLookupTimeout          = 750 * time.Millisecond
	DefaultShutdownDelay          = 10 * time.Second
	DefaultControllerUsername     = "system:serviceaccount:argo:argo"
	// DefaultB2Grace is Argo's RECENTLY_DELETED_POD_DURATION (2m), the wait Argo itself gives an
	// executor's writes to land and be seen, and repair's pod grace.
	DefaultB2Grace = 2 * time.Minute
	// DefaultB2OrphanGrace is how long ago an incomplete entry's node must have finished when its
	// pod is gone: Argo's TASK_RESULT_TIMEOUT_DURATION (10m), as repair's orphan grace.
	DefaultB2OrphanGrace = 10 * time.Minute
)

// BindFlags registers the options as flags on fs, with their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding tls.crt and tls.key (hot-reloaded).")
	fs.StringVar(&o.Host, "host", "", "Address the webhook listens on; empty means all interfaces.")
	fs.IntVar(&o.Port, "port", DefaultPort, "TLS port of the webhook.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", DefaultMetricsBindAddress, "Address of the plain-HTTP /metrics endpoint; \"0\" disables it.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", DefaultHealthProbeBindAddress, "Address of the plain-HTTP /healthz and /readyz endpoints.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig for the pod cache; empty means in-cluster.")
	fs.Func("mode", "enforce (apply patches) or audit (warn only). Default enforce.", func(s string) error {
		o.Mode = Mode(s)
		return nil
	})
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "Serve HTTP/2 (off by default: CVE-2023-44487).")
	fs.BoolVar(&o.Archive, "archive", false, "The workflow controller archives workflows (persistence.archive); rule B2 then sets workflow-archiving-status=Pending.")
	fs.BoolFunc("enable-b2", "Rule B2: complete a Workflow in the v3.5.3-v3.5.5 stuck shape (phase terminal, completed=false) once its task results can no longer change and their outputs are on the nodes. Default true; false turns it off.", func(s string) error {
		v, err := strconv.ParseBool(s)
		o.DisableB2 = !v
		return err
	})
	fs.BoolFunc("events", "Record an Event on the Workflow for every change the webhook makes (or, in audit mode, would make). Default true; false turns them off.", func(s string) error {
		v, err := strconv.ParseBool(s)
		o.DisableEvents = !v
		return err
	})
	fs.DurationVar(&o.B2Grace, "b2-grace", DefaultB2Grace, "How long every executor container of an incomplete task result's pod must have been terminated before rule B2 acts.")
	fs.StringVar(&o.ArchiveLabelSelector, "archive-label-selector", "", "The controller's persistence.archiveLabelSelector; only with --archive.")
	o.ControllerUsernames = []string{DefaultControllerUsername}
	fs.Func("controller-usernames", "Comma-separated users whose Workflow updates rule B2 acts on; \"*\" means any. Default "+DefaultControllerUsername+".", func(s string) error {
		o.ControllerUsernames = splitList(s)
		if len(o.ControllerUsernames) == 1 && o.ControllerUsernames[0] == "*" {
			o.ControllerUsernames = nil
		}
		return nil
	})
	fs.Func("namespaces", "Comma-separated namespaces to cache pods from; default all.", func(s string) error {
		o.Namespaces = splitList(s)
		return nil
	})
	fs.DurationVar(&o.LookupTimeout, "lookup-timeout", DefaultLookupTimeout, "Deadline for a request's pod lookups; past it the request is allowed unpatched.")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", DefaultShutdownDelay, "How long to keep serving after SIGTERM with readiness off.")
}

// setDefaults fills zero values.
func (o *Options) setDefaults() {
	if o.Mode == "" {
		o.Mode = ModeEnforce
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.LookupTimeout == 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	if o.B2Grace == 0 {
		o.B2Grace = DefaultB2Grace
	}
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if o.Mode != ModeEnforce && o.Mode != ModeAudit {
		errs = append(errs, fmt.Errorf("--mode must be enforce or audit, got %q", o.Mode))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir is required"))
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port must be 1-65535, got %d", o.Port))
	}
	if o.HealthProbeBindAddress == "" || o.HealthProbeBindAddress == "0" {
		errs = append(errs, errors.New("--health-probe-bind-address is required: readiness gates traffic"))
	}
	if o.LookupTimeout < 0 || o.LookupTimeout >= 2*time.Second {
		errs = append(errs, fmt.Errorf("--lookup-timeout must be under the webhook's 2s timeoutSeconds, got %s", o.LookupTimeout))
	}
	if o.B2Grace < 0 {
		errs = append(errs, fmt.Errorf("--b2-grace must not be negative, got %s", o.B2Grace))
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay must not be negative, got %s", o.ShutdownDelay))
	}
	if _, err := o.archiveSelector(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// archiveSelector parses ArchiveLabelSelector; nil means every workflow.
func (o *Options) archiveSelector() (labels.Selector, error) {
	if o.ArchiveLabelSelector == "" {
		return nil, nil
	}
	sel, err := labels.Parse(o.ArchiveLabelSelector)
	if err != nil {
		return nil, fmt.Errorf("--archive-label-selector: %w", err)
	}
	return sel, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
