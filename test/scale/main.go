// Command scale measures the webhook's pod cache at cluster scale (`make scale`): on the test
// control plane (a real kube-apiserver and etcd, bin/k8s) it creates Argo-like workflow pods in
// steps (10k, 50k, 100k by default), and at each step starts
//
//   - the real webhook binary (bin/argo-completion-webhook): its RSS once /readyz is OK, the time
//     until then (the pod cache's sync), and the latency of task-result reviews over TLS, each a
//     lookup of a random pod; once as shipped (the initial list streamed) and once with
//     KUBE_FEATURE_WatchListClient=false (the list read in pages);
//   - a probe process with the webhook's PodCache, and one with a plain controller-runtime cache
//     of whole pods (untrimmed), each reporting its own RSS once synced, its sync time and the
//     latency of PodForNode-style lookups of random pods timed in the process.
//
// It prints a table and writes it to .work/scale.txt.
//
// `scale repair` (`make repair-scale`, repair.go) measures the repair command instead: a scan of
// 2,000 workflows, 20,000 pods and 10,000 task results; it writes .work/repair-scale.txt.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "repair" {
		if err := repairMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "repair-scale:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := probeMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// etcdQuotaBytes is etcd's backend quota for the run: 100k pods of ~12 KB, each written twice
// (create, then status), are ~2.5 GB of revisions before compaction, past etcd's 2 GiB default.
const etcdQuotaBytes = 8 << 30

// controlPlaneGOGC is the control plane's GOGC: kube-apiserver holds every pod in its watch
// cache, plus a window of events with their previous versions, well over 100 KiB per Argo pod
// live; Go's default GC doubles that. 50 keeps 100k pods within this machine's memory.
const controlPlaneGOGC = "50"

// logDir keeps the webhook binary's logs of the last run, one file per step and variant.
const logDir = ".work/scale-logs"

// memoryMarginKiB is the memory a step must leave available to the rest of the machine.
const memoryMarginKiB = 3 << 20

func run() error {
	sizesFlag := flag.String("sizes", "10000,50000,100000", "comma-separated pod counts to measure at, ascending")
	workers := flag.Int("workers", 24, "concurrent pod writers")
	load := flag.Duration("load", 5*time.Second, "how long to drive reviews, and to time lookups, at each step")
	clients := flag.Int("clients", 8, "concurrent review clients and lookup goroutines")
	out := flag.String("out", ".work/scale.txt", "where to write the table (relative to the repository root)")
	bin := flag.String("bin", "bin/argo-completion-webhook", "the webhook binary (make build)")
	flag.Parse()
	var sizes []int
	for _, s := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			return fmt.Errorf("-sizes: %q is not an ascending list of pod counts", *sizesFlag)
		}
		sizes = append(sizes, n)
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	binPath := filepath.Join(root, *bin)
	if _, err := os.Stat(binPath); err != nil {
		return fmt.Errorf("%s not found: run `make build`", binPath)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := os.MkdirAll(filepath.Join(root, logDir), 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "acw-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, kubeconfig, cs, err := startControlPlane(dir)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	logf("control plane up (kube-apiserver %s)", controlplane.KubernetesVersion())

	var rows []row
	var notes []string
	created := 0
	var cpPerPod float64        // KiB of control plane RSS per pod created, in the last step
	var untrimmedPerPod float64 // KiB of the untrimmed probe's RSS per pod, once measured
	for _, size := range sizes {
		// Stop where the next step's pods would not fit in memory, at the control plane's growth
		// per pod in the last step.
		avail, err := memAvailableKiB()
		if err != nil {
			return err
		}
		if need := int64(cpPerPod*float64(size-created)) + memoryMarginKiB; need > avail {
			notes = append(notes, fmt.Sprintf("stopped before %d pods: creating them needs ~%s (the control plane's %.0f KiB per pod) and %s is available",
				size, mib(need), cpPerPod, mib(avail)))
			logf("%s", notes[len(notes)-1])
			break
		}
		cpBefore := controlPlaneRSSKiB()
		t0 := time.Now()
		stepCtx, cancelStep := context.WithCancelCause(ctx)
		err = createPods(stepCtx, cs, created, size, *workers, func(done int) {
			a, _ := memAvailableKiB()
			logf("  %d pods (control plane RSS %s, available %s)", done, mib(controlPlaneRSSKiB()), mib(a))
			if a < memoryMarginKiB {
				cancelStep(fmt.Errorf("only %s of memory available", mib(a)))
			}
		})
		if cause := context.Cause(stepCtx); cause != nil && ctx.Err() == nil {
			err = fmt.Errorf("stopped creating pods at about %d of %d: %w", created, size, cause)
		}
		cancelStep(nil)
		if err != nil {
			if len(rows) == 0 {
				return err
			}
			notes = append(notes, err.Error())
			logf("%v", err)
			break
		}
		logf("created pods %d..%d in %s (%.0f pods/s)", created, size-1, time.Since(t0).Round(time.Second), float64(size-created)/time.Since(t0).Seconds())
		cpPerPod = float64(controlPlaneRSSKiB()-cpBefore) / float64(size-created)
		created = size

		for _, b := range []struct {
			name, log string
			env       []string
		}{
			{"ours: webhook binary, as shipped (streamed list)", "streamed", nil},
			{"ours: webhook binary, GOGC=100", "gogc100", []string{"GOGC=100"}},
			{"ours: webhook binary, paged list", "paged", []string{"KUBE_FEATURE_WatchListClient=false"}},
		} {
			runDir, err := os.MkdirTemp(dir, "webhook-")
			if err != nil {
				return err
			}
			logPath := filepath.Join(root, logDir, fmt.Sprintf("webhook-%d-%s.log", size, b.log))
			r, err := runBinary(ctx, binPath, kubeconfig, runDir, logPath, b.env, size, *clients, *load)
			if err != nil {
				return fmt.Errorf("%s at %d pods: %w", b.name, size, err)
			}
			logf("%s: ready in %s, RSS %s, peak %s, reviews p99 %s (%d, %d errors, %d patched, lookup errors %.0f)", b.name,
				r.Ready.Round(time.Millisecond), mib(r.RSSKiB), mib(r.HWMKiB), r.P99, r.Reviews, r.Errors, r.Patched, r.LookupErrors)
			if r.Errors > 0 || r.LookupErrors > 0 {
				return fmt.Errorf("%s at %d pods: %d review errors, %.0f lookup errors", b.name, size, r.Errors, r.LookupErrors)
			}
			rows = append(rows, row{pods: size, what: b.name, sync: r.Ready, rss: r.RSSKiB, hwm: r.HWMKiB,
				review: fmt.Sprintf("%s / %s (%.0f/s)", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.RPS)})
		}
		for _, c := range []string{cacheOurs, cacheUntrimmed} {
			if c == cacheUntrimmed {
				avail, err := memAvailableKiB()
				if err != nil {
					return err
				}
				if need := int64(untrimmedPerPod*float64(size)) + memoryMarginKiB; need > avail {
					notes = append(notes, fmt.Sprintf("untrimmed not measured at %d pods: it needs ~%s (%.0f KiB per pod) and %s is available",
						size, mib(need), untrimmedPerPod, mib(avail)))
					logf("%s", notes[len(notes)-1])
					continue
				}
			}
			p, err := probe(ctx, self, c, kubeconfig, size, *clients, *load)
			if err != nil {
				return fmt.Errorf("probe %s at %d pods: %w", c, size, err)
			}
			logf("probe %s: synced in %s, RSS %s, lookups p99 %s (%d, %d misses)", c, p.Sync.Round(time.Millisecond), mib(p.RSSKiB), p.P99, p.Lookups, p.Misses)
			if p.Misses > 0 {
				return fmt.Errorf("probe %s at %d pods: %d lookups missed", c, size, p.Misses)
			}
			name := "ours: PodCache in a probe (GOGC=100)"
			if c == cacheUntrimmed {
				name = "untrimmed: controller-runtime cache of whole pods"
				untrimmedPerPod = float64(p.HWMKiB) / float64(size)
			}
			rows = append(rows, row{pods: size, what: name, sync: p.Sync, rss: p.RSSKiB, hwm: p.HWMKiB,
				lookup: fmt.Sprintf("%s / %s", p.P50.Round(time.Microsecond), p.P99.Round(time.Microsecond))})
		}
	}

	var buf bytes.Buffer
	writeTable(&buf, rows, notes, *clients, *load)
	fmt.Print(buf.String())
	path := filepath.Join(root, *out)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// startControlPlane starts kube-apiserver and etcd with room for the run, writes an admin
// kubeconfig and creates the namespace with its default service account. configure, when given,
// adjusts the environment before it starts (CRDs, API server flags).
func startControlPlane(dir string, configure ...func(*envtest.Environment)) (*envtest.Environment, string, kubernetes.Interface, error) {
	assets, err := controlplane.Assets()
	if err != nil {
		return nil, "", nil, err
	}
	etcd := &envtest.Etcd{}
	etcd.Configure().Set("quota-backend-bytes", strconv.Itoa(etcdQuotaBytes))
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlane:             envtest.ControlPlane{Etcd: etcd},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  2 * time.Minute,
	}
	for _, c := range configure {
		c(env)
	}
	// The control plane's processes inherit this process's environment.
	prev, had := os.LookupEnv("GOGC")
	_ = os.Setenv("GOGC", controlPlaneGOGC)
	cfg, err := env.Start()
	if had {
		_ = os.Setenv("GOGC", prev)
	} else {
		_ = os.Unsetenv("GOGC")
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("starting the control plane: %w", err)
	}
	fail := func(err error) (*envtest.Environment, string, kubernetes.Interface, error) {
		_ = env.Stop()
		return nil, "", nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "scale-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	// The writers: protobuf, and no client-side rate limit (the API server's own flow control
	// applies).
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	return env, kubeconfig, cs, nil
}

// probe runs a probe process for cache and returns what it measured.
func probe(ctx context.Context, self, cache, kubeconfig string, pods, workers int, d time.Duration) (probeResult, error) {
	var res probeResult
	cmd := exec.CommandContext(ctx, self, "probe", "-cache", cache, "-kubeconfig", kubeconfig,
		"-pods", strconv.Itoa(pods), "-workers", strconv.Itoa(workers), "-duration", d.String())
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("%w: %s", err, stdout.String())
	}
	err := json.Unmarshal(stdout.Bytes(), &res)
	return res, err
}

// row is one line of the table.
type row struct {
	pods     int
	what     string
	sync     time.Duration
	rss, hwm int64 // KiB
	lookup   string
	review   string
}

func writeTable(w io.Writer, rows []row, notes []string, clients int, load time.Duration) {
	fmt.Fprintf(w, "pod cache at scale: Argo-like workflow pods (init, wait and main containers, main only for one in ten (resource templates), each with a ~3 KB ARGO_TEMPLATE; half terminated), kube-apiserver %s\n", controlplane.KubernetesVersion())
	fmt.Fprintf(w, "RSS: VmRSS when ready (binary: first /readyz OK; probe: WaitForCacheSync returned); peak: VmHWM after the %s of load\n", load)
	fmt.Fprintf(w, "lookup: p50 / p99 of a random pod's lookup timed in the probe process (%d goroutines, %s)\n", clients, load)
	fmt.Fprintf(w, "review: p50 / p99 (rate) of task-result CREATE reviews of random pods over TLS to the binary (%d keep-alive clients, %s)\n\n", clients, load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pods\tcache\tready/synced\tRSS\tpeak RSS\tlookup p50 / p99\treview p50 / p99")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.pods, r.what, r.sync.Round(100*time.Millisecond), mib(r.rss), mib(r.hwm),
			dash(r.lookup), dash(r.review))
	}
	_ = tw.Flush()
	// The marginal cost of a pod: RSS growth from the smallest step to the largest, per pod.
	first, last := map[string]row{}, map[string]row{}
	var order []string
	for _, r := range rows {
		if _, ok := first[r.what]; !ok {
			first[r.what] = r
			order = append(order, r.what)
		}
		last[r.what] = r
	}
	fmt.Fprintln(w)
	for _, what := range order {
		f, l := first[what], last[what]
		if l.pods == f.pods {
			continue
		}
		fmt.Fprintf(w, "%s: RSS %+.2f KiB per pod from %d to %d pods (peak %+.2f KiB)\n", what,
			float64(l.rss-f.rss)/float64(l.pods-f.pods), f.pods, l.pods, float64(l.hwm-f.hwm)/float64(l.pods-f.pods))
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
