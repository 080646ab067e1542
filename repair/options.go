package repair

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/rest"
)

// Options configure Run.
type Options struct {
	// Kubeconfig is the kubeconfig path; "" means in-cluster (or $KUBECONFIG, ~/.kube/config).
	Kubeconfig string
	// RESTConfig, when set, is used instead of Kubeconfig.
	RESTConfig *rest.Config
	// Namespace limits the scan to one namespace; AllNamespaces scans every namespace.
	Namespace     string
	AllNamespaces bool
	// Selector is an extra label selector on the task results.
	Selector string
	// Apply patches the verdicts; without it Run only reports.
	Apply bool
	// Output is "table" or "json".
	Output string
	// PodGrace and OrphanGrace are rule A3's grace periods.
	PodGrace, OrphanGrace time.Duration
	// Now is the clock (tests set it); nil means time.Now.
	Now func() time.Time
	// Out receives the report; Err the progress lines.
	Out, Err io.Writer
}

// Defaults: Argo's own RECENTLY_DELETED_POD_DURATION and TASK_RESULT_TIMEOUT_DURATION.
const (
	DefaultPodGrace    = 2 * time.Minute
	DefaultOrphanGrace = 10 * time.Minute
)

// BindFlags registers the options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig; empty means in-cluster, then $KUBECONFIG or ~/.kube/config.")
	fs.StringVar(&o.Namespace, "namespace", "", "Scan this namespace.")
	fs.StringVar(&o.Namespace, "n", "", "Shorthand for --namespace.")
	fs.BoolVar(&o.AllNamespaces, "all-namespaces", false, "Scan every namespace.")
	fs.BoolVar(&o.AllNamespaces, "A", false, "Shorthand for --all-namespaces.")
	fs.StringVar(&o.Selector, "selector", "", "Extra label selector on the task results (e.g. workflows.argoproj.io/workflow=my-wf).")
	fs.BoolVar(&o.Apply, "apply", false, "Patch the label on the task results found safe; without it, only report.")
	fs.StringVar(&o.Output, "o", "table", "Output: table or json.")
	fs.DurationVar(&o.PodGrace, "pod-grace", DefaultPodGrace, "How long every executor container must have been terminated.")
	fs.DurationVar(&o.OrphanGrace, "orphan-grace", DefaultOrphanGrace, "How long ago the node finished (or the result was created) when its pod is gone.")
}

func (o *Options) setDefaults() {
	if o.Output == "" {
		o.Output = "table"
	}
	if o.PodGrace == 0 {
		o.PodGrace = DefaultPodGrace
	}
	if o.OrphanGrace == 0 {
		o.OrphanGrace = DefaultOrphanGrace
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	switch {
	case o.AllNamespaces && o.Namespace != "":
		errs = append(errs, errors.New("give --namespace or --all-namespaces, not both"))
	case !o.AllNamespaces && o.Namespace == "":
		errs = append(errs, errors.New("give --namespace <ns> or --all-namespaces"))
	}
	if o.Output != "table" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o must be table or json, got %q", o.Output))
	}
	if o.PodGrace < 0 || o.OrphanGrace < 0 {
		errs = append(errs, errors.New("grace periods must not be negative"))
	}
	return errors.Join(errs...)
}
