package repair

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
)

// Options configure Run.
type Options struct {
	// Kubeconfig is the kubeconfig path; "" means in-cluster (or $KUBECONFIG, ~/.kube/config).
	Kubeconfig string
	// RESTConfig, when set, is used instead of Kubeconfig.
	RESTConfig *rest.Config
	// Namespace limits the scan to one namespace; Namespaces to several, scanned in turn (for
	// a deployment whose permissions are Roles in those namespaces); AllNamespaces scans every
	// namespace. Exactly one of the three is given.
	Namespace     string
	Namespaces    []string
	AllNamespaces bool
	// Selector is an extra label selector on the Workflows.
	Selector string
	// Workflow, with Namespace, explains that one workflow in full: every Pod node, its pod, its
	// task result, the cause and the next step (and repairs it with Apply).
	Workflow string
	// Apply flips the labels and creates the task results found safe; without it Run only
	// reports. It never writes a Workflow.
	Apply bool
	// Output is "table" or "json".
	Output string
	// PodGrace and OrphanGrace are the grace periods of rules A3 (flip) and A4 (create).
	PodGrace, OrphanGrace time.Duration
	// ConfirmAfter is, with Apply, how long Run waits after the first pass before it re-reads
	// each workflow with a node found safe (its task results, pods and executors' rights),
	// diagnoses it again and repairs only what is still safe and unchanged; 0 means
	// DefaultConfirmAfter. There is no wait when nothing is to be repaired. Tests set a few
	// milliseconds.
	ConfirmAfter time.Duration
	// FailOnManual makes Run return an error (a failed CronJob run, which alerts) when a node
	// needs the operator: RBAC to fix, a lost pod to delete, an upgrade.
	FailOnManual bool
	// AfterFirstPass, when set, is called once an Apply run's first pass has found nodes to
	// repair, before the confirmation delay. It is a test hook: a test changes the cluster
	// there (a retry, say) between the two passes, deterministically.
	AfterFirstPass func()
	// QPS and Burst are the client's rate limit towards the API server, applied to the REST
	// config whichever way it was loaded (RESTConfig's own are replaced); 0 means DefaultQPS
	// and DefaultBurst.
	QPS   float32
	Burst int
	// Now is the clock (tests set it); nil means time.Now.
	Now func() time.Time
	// Out receives the report; Err the progress lines.
	Out, Err io.Writer
}

// Defaults: Argo's own RECENTLY_DELETED_POD_DURATION and TASK_RESULT_TIMEOUT_DURATION for the
// grace periods.
const (
	DefaultPodGrace    = 2 * time.Minute
	DefaultOrphanGrace = 10 * time.Minute
	// DefaultConfirmAfter spans the gap inside one `argo retry`: v3.5.4's RetryWorkflow
	// (server/workflow/workflow_server.go) deletes the retried nodes' pods one request at a time
	// and only then updates the Workflow, so for that while the facts read as "pod gone, node
	// finished long ago". 30 s outlasts that gap many times over and is short against the
	// CronJob's 5-minute schedule and 600 s deadline.
	DefaultConfirmAfter = 30 * time.Second
	// DefaultQPS and DefaultBurst replace client-go's 5 and 10, which throttle a scan: each
	// workflow read in full costs three requests (the Workflow, its task results, its pods), so
	// at 5 QPS 500 of them take minutes of a CronJob whose deadline is 600 s. 50 and 100 are
	// what the webhook's own client uses. The requests are sequential, the limit applies to each
	// kind's requests apart (controller-runtime's client makes one REST client, with its own
	// token bucket, per kind), and the API server's priority and fairness still applies.
	DefaultQPS   = 50
	DefaultBurst = 100
)

// BindFlags registers the options on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig; empty means in-cluster, then $KUBECONFIG or ~/.kube/config.")
	fs.StringVar(&o.Namespace, "namespace", "", "Scan this namespace.")
	fs.StringVar(&o.Namespace, "n", "", "Shorthand for --namespace.")
	fs.Func("namespaces", "Scan these namespaces in turn: a comma-separated list (ns1,ns2); may be repeated.", func(v string) error {
		o.Namespaces = append(o.Namespaces, strings.Split(v, ",")...)
		return nil
	})
	fs.BoolVar(&o.AllNamespaces, "all-namespaces", false, "Scan every namespace.")
	fs.BoolVar(&o.AllNamespaces, "A", false, "Shorthand for --all-namespaces.")
	fs.StringVar(&o.Selector, "selector", "", "Extra label selector on the Workflows (e.g. workflows.argoproj.io/controller-instanceid=team-a).")
	fs.StringVar(&o.Workflow, "workflow", "", "With -n: explain this one workflow in full (every Pod node, its pod, its task result, the cause and the next step).")
	fs.BoolVar(&o.Apply, "apply", false, "Flip the label on, or create, the task results found safe; without it, only report.")
	fs.StringVar(&o.Output, "o", "table", "Output: table or json.")
	fs.DurationVar(&o.PodGrace, "pod-grace", DefaultPodGrace, "How long every executor container must have been terminated.")
	fs.DurationVar(&o.OrphanGrace, "orphan-grace", DefaultOrphanGrace, "How long ago the node must have finished when its pod is gone.")
	o.QPS = DefaultQPS // fs.Func sets no default of its own
	fs.Func("qps", fmt.Sprintf("Requests per second to the API server (client-side limit; default %d; 0 means the default).", DefaultQPS), func(v string) error {
		f, err := strconv.ParseFloat(v, 32)
		o.QPS = float32(f)
		return err
	})
	fs.IntVar(&o.Burst, "burst", DefaultBurst, "Requests allowed at once above --qps (client-side limit).")
	fs.BoolVar(&o.FailOnManual, "fail-on-manual", false, "Exit non-zero, after the report, when a stuck node needs the operator (verdict manual: fix RBAC, delete a lost pod, upgrade Argo), so a CronJob run fails and alerts.")
	fs.DurationVar(&o.ConfirmAfter, "confirm-after", DefaultConfirmAfter, "With --apply: how long to wait before re-reading each workflow with a node found safe (its task results, pods and executors' rights) and repairing only what is still safe and unchanged; 0 means the default. No wait when nothing is to repair.")
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
	if o.ConfirmAfter == 0 {
		o.ConfirmAfter = DefaultConfirmAfter
	}
	if o.QPS == 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
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
	var given []string
	if o.Namespace != "" {
		given = append(given, "--namespace")
	}
	if o.Namespaces != nil {
		given = append(given, "--namespaces")
	}
	if o.AllNamespaces {
		given = append(given, "--all-namespaces")
	}
	switch {
	case len(given) == 0:
		errs = append(errs, errors.New("give --namespace <ns>, --namespaces <ns1,ns2> or --all-namespaces"))
	case len(given) > 1:
		errs = append(errs, fmt.Errorf("give only one of --namespace, --namespaces and --all-namespaces, not %s", strings.Join(given, " and ")))
	}
	if o.Namespace != "" {
		errs = append(errs, validNamespace("--namespace", o.Namespace))
	}
	if o.Namespaces != nil && len(o.Namespaces) == 0 {
		errs = append(errs, errors.New("--namespaces: no namespace given"))
	}
	if slices.Contains(o.Namespaces, "") {
		errs = append(errs, fmt.Errorf("--namespaces %q: an empty name (a stray comma?)", strings.Join(o.Namespaces, ",")))
	}
	seen := map[string]bool{}
	for _, ns := range o.Namespaces {
		switch {
		case ns == "":
		case seen[ns]:
			errs = append(errs, fmt.Errorf("--namespaces: %s is listed twice", ns))
		default:
			errs = append(errs, validNamespace("--namespaces", ns))
		}
		seen[ns] = true
	}
	if o.Workflow != "" {
		if o.Namespace == "" {
			errs = append(errs, errors.New("--workflow needs --namespace (-n), not --namespaces or --all-namespaces"))
		}
		if o.Selector != "" {
			errs = append(errs, errors.New("--selector does not apply with --workflow"))
		}
		if msgs := validation.IsDNS1123Subdomain(o.Workflow); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--workflow: %q is not a workflow name: %s", o.Workflow, strings.Join(msgs, "; ")))
		}
	}
	if o.Output != "table" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o must be table or json, got %q", o.Output))
	}
	if o.PodGrace < 0 || o.OrphanGrace < 0 {
		errs = append(errs, errors.New("grace periods must not be negative"))
	}
	if o.ConfirmAfter < 0 {
		errs = append(errs, fmt.Errorf("--confirm-after must not be negative, got %s", o.ConfirmAfter))
	}
	if !(o.QPS >= 0) || o.Burst < 0 { // !(>=) also refuses NaN; 0 means the default
		errs = append(errs, fmt.Errorf("--qps and --burst must be positive (0 for the default), got %g and %d", o.QPS, o.Burst))
	}
	return errors.Join(errs...)
}

// validNamespace says why name is not a namespace name (a DNS-1123 label); nil when it is.
func validNamespace(flag, name string) error {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return fmt.Errorf("%s: %q is not a namespace name: %s", flag, name, strings.Join(msgs, "; "))
	}
	return nil
}

// namespaces returns the namespaces to scan in turn; one "" (every namespace) with AllNamespaces.
func (o *Options) namespaces() []string {
	switch {
	case o.AllNamespaces:
		return []string{""}
	case o.Namespace != "":
		return []string{o.Namespace}
	}
	return o.Namespaces
}
