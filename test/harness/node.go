package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// ExecutorBehaviour selects which argoexec the simulated node imitates. It decides the write
// sequence of resource and data pods, how every executor (wait containers included) upserts its
// task result, and how it reacts when RBAC refuses a write.
type ExecutorBehaviour string

const (
	// ExecutorV351 is argoexec ≤ v3.5.1 (read at v3.5.1; v3.3.2+ alike), left running during an
	// upgrade (R1). reportResult writes only when there are outputs, and its Create carries
	// only the workflow label (no report-outputs-completed) and a Pod owner reference; there is
	// no InitializeOutput and no FinalizeOutput. Resource and data pods write as ExecutorV354.
	ExecutorV351 ExecutorBehaviour = "v3.5.1"
	// ExecutorV354 is argoexec v3.5.2–v3.5.4. `argoexec resource` and `argoexec data` make one
	// write, a Create with outputs and report-outputs-completed "false", and never finalize
	// (execResource/execData without FinalizeOutput: argo-workflows#12985). A wait container
	// upserts as every v3.5 executor does (Create, then a merge patch on AlreadyExists).
	ExecutorV354 ExecutorBehaviour = "v3.5.4"
	// ExecutorV355 is argoexec v3.5.5–v3.5.x (PR #12544): resource and data pods, like wait
	// containers, call InitializeOutput (placeholder Create), ReportOutputs (Create, rejected
	// with AlreadyExists, then a merge patch of the outputs) and the deferred FinalizeOutput
	// (label merge patch).
	ExecutorV355 ExecutorBehaviour = "v3.5.5"
	// ExecutorV37 is argoexec v3.7.1+ (read at v3.7.18): the v3.5.5 sequence, but upsertTaskResult
	// remembers that it created the task result (#14618, also v3.6.11+), so ReportOutputs is a
	// merge patch with no rejected Create; and a refused write has no pod-annotation fallback
	// (removed in v3.6.0, #13100).
	ExecutorV37 ExecutorBehaviour = "v3.7"
)

// The pod annotations that select the node's behaviour for one pod. Set them through a
// workflow's spec.podMetadata.annotations or a template's metadata.annotations: the controller
// copies both onto the pod. At most one of the fault annotations (every one below except
// ExecutorAnnotation and ExitCodeAnnotation) may be set on a pod; a pod whose template cannot
// show the fault (for example a wait-container fault on a resource pod) is a node error.
const (
	// ExecutorAnnotation overrides the node's Executor for the pod (an ExecutorBehaviour value),
	// so a control run can use the fixed executor beside the buggy one.
	ExecutorAnnotation = "e2e.argo-completion-webhook.io/executor"
	// ExitCodeAnnotation makes the simulated main container exit with that code; a non-zero code
	// fails the pod. The executor still writes as argoexec does when main fails: a wait
	// container reports and finalizes; a v3.5.5+ resource or data pod's deferred FinalizeOutput
	// runs (no ReportOutputs); a v3.5.4 resource or data pod exits before its only write.
	ExitCodeAnnotation = "e2e.argo-completion-webhook.io/exit-code"
	// LateWritesAnnotation (a duration, for example "3s") makes the kubelet report the pod
	// terminated (every container exit 0, or main's ExitCodeAnnotation code) right after the
	// placeholder, and the wait container's last writes (ReportOutputs, FinalizeOutput) land that
	// long afterwards: a controller whose pod informer is ahead of its task-result informer.
	// Pods with a wait container only.
	LateWritesAnnotation = "e2e.argo-completion-webhook.io/late-writes"
	// WaitDiesAfterReportAnnotation ("true") models R5: the wait container's placeholder and
	// ReportOutputs land, FinalizeOutput never does (it gave up; its failed attempts are not
	// sent), and the pod ends Succeeded with every container terminated exit 0 (FinalizeOutput's
	// error does not change the exit code).
	// Pods with a wait container only.
	WaitDiesAfterReportAnnotation = "e2e.argo-completion-webhook.io/wait-dies-after-report"
	// WaitKilledAfterReportAnnotation ("true") models R3: the same writes as
	// WaitDiesAfterReportAnnotation, then the wait container is terminated with exit 137
	// (OOMKilled) and the pod Failed. Pods with a wait container only.
	WaitKilledAfterReportAnnotation = "e2e.argo-completion-webhook.io/wait-killed-after-report"
	// PodDeletedMidRunAnnotation ("true") models R4, once per workflow (a pod created again for
	// the node, or a retry's pod, runs normally): after the placeholder write the pod runs for
	// evictAfter (so the controller sees its node Running), then the pod object is deleted (grace
	// period 0) and no further write or status update happens. (A pod deleted while its node is
	// still Pending is recreated by the controller, which is not R4.) Pods that write a
	// placeholder only (not ExecutorV354 resource or data pods).
	PodDeletedMidRunAnnotation = "e2e.argo-completion-webhook.io/pod-deleted-mid-run"
	// RBACRefusedAnnotation ("true") models R2: the pod's executor acts as RefusedServiceAccount,
	// which no binding names, so authorization refuses every write (403) before admission. The
	// simulated argoexec reacts as its version does: v3.5 (ExecutorV354/ExecutorV355) falls back
	// to merge-patching the pod's annotations, which the same account is also refused; v3.7 has
	// no fallback. A wait container then exits non-zero (1 in v3.5, log.Fatalf; 64 in v3.7,
	// cmd/argoexec/main.go), as does a resource or data main whose ReportOutputs failed. The
	// refusals are expected and are not node errors; a write that is not refused is one.
	RBACRefusedAnnotation = "e2e.argo-completion-webhook.io/rbac-refused"
	// MainKilledBeforeFinalizeAnnotation (a non-zero exit code, for example "137") models R6: a
	// v3.5.5+ resource or data pod's main dies after the placeholder and before its deferred
	// FinalizeOutput (#13299 kubectl os.Exit, #13937 deadline), so the pod is Failed, main is
	// terminated with that code and the task result stays "false". ExecutorV355 and ExecutorV37
	// resource or data pods only.
	MainKilledBeforeFinalizeAnnotation = "e2e.argo-completion-webhook.io/main-killed-before-finalize"
)

// RefusedServiceAccount is the service account a pod's executor acts as under
// RBACRefusedAnnotation. Nothing binds it to a role, so every executor request is refused.
const RefusedServiceAccount = "e2e-without-executor-role"

// The simulated durations. The kubelet lag keeps the pod running a moment after the executor's
// last write, so without a fault the controller usually sees the task result before the pod ends.
const (
	mainRuns   = 100 * time.Millisecond // main's work, between the placeholder and the report
	kubeletLag = 300 * time.Millisecond // from the executor's last write to the terminated status
	// evictAfter is how long a PodDeletedMidRunAnnotation pod runs before its deletion: longer
	// than the controller's requeue in the suites (DEFAULT_REQUEUE_TIME 2s), so it has seen the
	// pod Running.
	evictAfter = 4 * time.Second
)

// Step is one thing the node did for a pod: a kubelet status write, the pod's deletion, or one
// API request of the simulated argoexec (each attempt, refused or not, in order).
type Step struct {
	// Actor is "kubelet", "eviction" (the deletion), or the argoexec function that sent the
	// request: "InitializeOutput", "ReportOutputs" or "FinalizeOutput".
	Actor string
	// Verb is create, patch, update or delete.
	Verb string
	// Resource is workflowtaskresults, pods (argoexec v3.5's annotation fallback, or the
	// deletion) or pods/status.
	Resource string
	// Detail is, for a kubelet write, the phase written; for a task-result write "outputs" when
	// the body carries an outputs key (what the webhook's matchConditions test) and "label" for
	// FinalizeOutput's label patch; for a pod annotation, the annotation key.
	Detail string
	// Err is the API status reason (AlreadyExists, Forbidden, …) when the request failed.
	Err string
	// At is when the request returned.
	At time.Time
}

// String renders the step as "Actor verb resource [detail][: Err]".
func (s Step) String() string {
	out := s.Actor + " " + s.Verb + " " + s.Resource
	if s.Detail != "" {
		out += " " + s.Detail
	}
	if s.Err != "" {
		out += ": " + s.Err
	}
	return out
}

// Node stands in for a kubelet and for argoexec, since no kubelet runs here. It watches the pods
// Argo's controller creates in one namespace and, for each:
//
//  1. as the kubelet, moves the pod to Running (containers running);
//  2. as argoexec, under the pod's service account with the pod-name extra a bound token
//     carries, makes the WorkflowTaskResult writes argoexec's code path for the template type
//     and version makes (see runWaitPod and runMainOnlyPod), request for request, including
//     the Create that upsertTaskResult sends and the API server rejects with AlreadyExists
//     (it still passes through mutating admission before storage rejects it);
//  3. as the kubelet, moves the pod to Succeeded or Failed with every container terminated, the
//     shape podReconciliation/assessNodeStatus reads.
//
// The pod annotations above select faults per pod. Not simulated: transient errors and
// argoexec's retries (a refusal is not transient, so it is tried once), the progress monitor's
// periodic reportResult (its first tick is after these pods end), artifacts, outputs of
// templates whose ARGO_TEMPLATE is offloaded, and argoexec v4.1's data pods (no placeholder).
//
// It records each pod's main command line (with input parameters substituted by the controller),
// the output parameters it reported and every step, so tests can check that no output was lost
// between steps and that the traffic is what argoexec sends.
type Node struct {
	// Admin acts as the kubelet (pod status) and reads pods.
	Admin client.Client
	// Config is the base config from which executor clients impersonate service accounts.
	Config *rest.Config
	// Namespace is where the controller runs pods.
	Namespace string
	// Executor selects the argoexec behaviour for pods without ExecutorAnnotation.
	Executor ExecutorBehaviour
	// Logf receives one line per step; nil discards.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	seen     map[types.UID]bool
	args     map[string]string            // pod name → main container's command line, inputs substituted
	outputs  map[string]map[string]string // pod name → output parameter name → value reported
	evicted  map[string]bool              // workflows whose pod PodDeletedMidRunAnnotation deleted
	steps    map[string][]Step            // pod name → what the node did, in order
	finished map[string]bool              // pod name → the node is done with it
	errs     []error
}

// Ran returns, for every pod whose name contains part, the main container's command line (the
// controller substitutes input parameters into it) and the output parameters the pod reported.
func (n *Node) Ran(part string) (commandLines []string, outputs []map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for pod, args := range n.args {
		if strings.Contains(pod, part) {
			commandLines = append(commandLines, args)
			outputs = append(outputs, n.outputs[pod])
		}
	}
	return commandLines, outputs
}

// Steps returns what the node did for the pod named pod so far, in order.
func (n *Node) Steps(pod string) []Step {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Step(nil), n.steps[pod]...)
}

// Finished reports whether the node is done with the pod named pod: its last write and its
// last status update (or its deletion) have been made, or it failed with an error.
func (n *Node) Finished(pod string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.finished[pod]
}

// Errors returns the errors the node met (a failed executor write is a test failure, unless the
// pod's RBACRefusedAnnotation made the refusal the point).
func (n *Node) Errors() []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]error(nil), n.errs...)
}

func (n *Node) logf(format string, args ...any) {
	if n.Logf != nil {
		n.Logf(format, args...)
	}
}

func (n *Node) record(pod string, s Step) {
	s.At = time.Now()
	n.mu.Lock()
	n.steps[pod] = append(n.steps[pod], s)
	n.mu.Unlock()
	n.logf("node: pod %s: %s", pod, s)
}

// Run polls for new workflow pods every 100 ms until ctx ends, running each in a goroutine.
func (n *Node) Run(ctx context.Context) {
	n.mu.Lock()
	n.seen = map[types.UID]bool{}
	n.args = map[string]string{}
	n.outputs = map[string]map[string]string{}
	n.evicted = map[string]bool{}
	n.steps = map[string][]Step{}
	n.finished = map[string]bool{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var pods corev1.PodList
		if err := n.Admin.List(ctx, &pods, client.InNamespace(n.Namespace), client.HasLabels{rules.LabelWorkflow}); err == nil {
			for i := range pods.Items {
				pod := pods.Items[i]
				n.mu.Lock()
				isNew := !n.seen[pod.UID]
				n.seen[pod.UID] = true
				n.mu.Unlock()
				if isNew {
					wg.Go(func() {
						err := n.runPod(ctx, &pod)
						n.mu.Lock()
						n.finished[pod.Name] = true
						if err != nil && ctx.Err() == nil {
							n.errs = append(n.errs, fmt.Errorf("pod %s: %w", pod.Name, err))
						}
						n.mu.Unlock()
						if err != nil && ctx.Err() == nil {
							n.logf("node: pod %s: %v", pod.Name, err)
						}
					})
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// template is what the node reads of the ARGO_TEMPLATE environment variable.
type template struct {
	Name      string          `json:"name"`
	Container json.RawMessage `json:"container"`
	Script    json.RawMessage `json:"script"`
	Resource  json.RawMessage `json:"resource"`
	Data      json.RawMessage `json:"data"`
	// Outputs is the template's outputs as declared; argoexec reports a copy with values filled.
	Outputs map[string]any `json:"outputs"`
}

func (t *template) kind() string {
	switch {
	case t.Resource != nil:
		return "resource"
	case t.Data != nil:
		return "data"
	case t.Script != nil:
		return "script"
	}
	return "container"
}

// auxiliary reports whether the pod runs a wait container beside main (container, script and
// containerSet templates; resource and data pods run main only).
func (t *template) auxiliary() bool {
	k := t.kind()
	return k == "container" || k == "script"
}

// podTemplate reads ARGO_TEMPLATE: on every container in v3.5, only on the init container from
// v3.7 (argoexec reads it there and shares it through the /var/run/argo volume).
func podTemplate(pod *corev1.Pod) (*template, error) {
	v, ok := podEnv(pod, "ARGO_TEMPLATE")
	switch {
	case !ok:
		return nil, fmt.Errorf("no ARGO_TEMPLATE in any container")
	case v == "offloaded":
		return nil, fmt.Errorf("ARGO_TEMPLATE offloaded to a ConfigMap: not simulated")
	}
	var t template
	if err := json.Unmarshal([]byte(v), &t); err != nil {
		return nil, fmt.Errorf("ARGO_TEMPLATE: %w", err)
	}
	return &t, nil
}

// podEnv returns the value of the first env var name found on the pod's containers.
func podEnv(pod *corev1.Pod, name string) (string, bool) {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}

// behaviour is what the pod's annotations select.
type behaviour struct {
	executor    ExecutorBehaviour
	exitCode    int32
	lateWrites  time.Duration
	waitDies    bool
	waitKilled  bool
	podDeleted  bool
	rbacRefused bool
	mainKilled  int32
}

// behaviourOf reads and checks the pod's behaviour annotations against its template.
func (n *Node) behaviourOf(pod *corev1.Pod, tmpl *template) (behaviour, error) {
	b := behaviour{executor: n.Executor}
	a := pod.Annotations
	if v := a[ExecutorAnnotation]; v != "" {
		b.executor = ExecutorBehaviour(v)
	}
	switch b.executor {
	case ExecutorV351, ExecutorV354, ExecutorV355, ExecutorV37:
	default:
		return b, fmt.Errorf("executor %q: want %s, %s, %s or %s", b.executor, ExecutorV351, ExecutorV354, ExecutorV355, ExecutorV37)
	}
	code := func(key string) (int32, error) {
		c, err := strconv.ParseInt(a[key], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("annotation %s: %w", key, err)
		}
		return int32(c), nil
	}
	flag := func(key string) (bool, error) {
		ok, err := strconv.ParseBool(a[key])
		if err != nil {
			return false, fmt.Errorf("annotation %s: %w", key, err)
		}
		return ok, nil
	}
	var err error
	faults := 0
	for _, key := range []string{ExitCodeAnnotation, LateWritesAnnotation, WaitDiesAfterReportAnnotation, WaitKilledAfterReportAnnotation, PodDeletedMidRunAnnotation, RBACRefusedAnnotation, MainKilledBeforeFinalizeAnnotation} {
		if _, set := a[key]; !set {
			continue
		}
		switch key {
		case ExitCodeAnnotation:
			b.exitCode, err = code(key)
		case LateWritesAnnotation:
			if b.lateWrites, err = time.ParseDuration(a[key]); err == nil && b.lateWrites <= 0 {
				err = fmt.Errorf("annotation %s: want a positive duration, got %q", key, a[key])
			}
		case WaitDiesAfterReportAnnotation:
			b.waitDies, err = flag(key)
		case WaitKilledAfterReportAnnotation:
			b.waitKilled, err = flag(key)
		case PodDeletedMidRunAnnotation:
			b.podDeleted, err = flag(key)
		case RBACRefusedAnnotation:
			b.rbacRefused, err = flag(key)
		case MainKilledBeforeFinalizeAnnotation:
			if b.mainKilled, err = code(key); err == nil && b.mainKilled == 0 {
				err = fmt.Errorf("annotation %s: want a non-zero exit code", key)
			}
		}
		if err != nil {
			return b, err
		}
		if key != ExitCodeAnnotation {
			faults++
		}
	}
	waitOnly := b.lateWrites > 0 || b.waitDies || b.waitKilled
	placeholder := (tmpl.auxiliary() || b.executor != ExecutorV354) && b.executor != ExecutorV351
	switch {
	case faults > 1:
		return b, fmt.Errorf("at most one fault annotation per pod, got %d", faults)
	case waitOnly && !tmpl.auxiliary():
		return b, fmt.Errorf("a wait-container fault on a %s pod, which has no wait container", tmpl.kind())
	case b.podDeleted && !placeholder:
		return b, fmt.Errorf("%s on a %s %s pod, which writes no placeholder", PodDeletedMidRunAnnotation, b.executor, tmpl.kind())
	case b.mainKilled != 0 && (tmpl.auxiliary() || b.executor == ExecutorV354 || b.executor == ExecutorV351):
		return b, fmt.Errorf("%s on a %s %s pod: only v3.5.5+ resource and data pods finalize from main", MainKilledBeforeFinalizeAnnotation, b.executor, tmpl.kind())
	case b.waitDies && b.exitCode != 0:
		return b, fmt.Errorf("%s ends every container with exit 0; drop %s", WaitDiesAfterReportAnnotation, ExitCodeAnnotation)
	}
	return b, nil
}

// containerEnd is how a container terminated.
type containerEnd struct {
	code   int32
	reason string
}

func exited(code int32) containerEnd {
	if code == 0 {
		return containerEnd{0, "Completed"}
	}
	return containerEnd{code, "Error"}
}

var oomKilled = containerEnd{137, "OOMKilled"}

func (n *Node) runPod(ctx context.Context, pod *corev1.Pod) error {
	tmpl, err := podTemplate(pod)
	if err != nil {
		return err
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == "main" {
			n.mu.Lock()
			n.args[pod.Name] = strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
			n.mu.Unlock()
		}
	}
	b, err := n.behaviourOf(pod, tmpl)
	if err != nil {
		return err
	}
	if b.podDeleted {
		// An eviction happens once per workflow: a pod the controller creates again for the
		// node after "pod deleted", or the pod of a retry, runs normally.
		id := pod.Namespace + "/" + pod.Labels[rules.LabelWorkflow]
		n.mu.Lock()
		b.podDeleted, n.evicted[id] = !n.evicted[id], true
		n.mu.Unlock()
	}
	exec, err := n.argoexec(pod, tmpl, b)
	if err != nil {
		return err
	}
	n.logf("node: pod %s (%s template, argoexec %s)", pod.Name, tmpl.kind(), b.executor)
	if err := n.setRunning(ctx, pod); err != nil {
		return err
	}
	if tmpl.auxiliary() {
		return n.runWaitPod(ctx, pod, b, exec)
	}
	return n.runMainOnlyPod(ctx, pod, tmpl, b, exec)
}

// runWaitPod plays a pod with a wait container. The wait container runs waitContainer
// (cmd/argoexec/commands/wait.go, v3.5.4 and v3.7.18): InitializeOutput, wait for main,
// CaptureScriptResult/SaveParameters/SaveArtifacts/SaveLogs, ReportOutputs, and the deferred
// FinalizeOutput, which runs whatever main's exit code. It returns HasError() as evaluated
// before the defers, so only an error of InitializeOutput or ReportOutputs makes it exit non-zero.
func (n *Node) runWaitPod(ctx context.Context, pod *corev1.Pod, b behaviour, exec *argoexec) error {
	if err := exec.initializeOutput(ctx); err != nil {
		return err
	}
	if b.podDeleted {
		time.Sleep(evictAfter)
		return n.deletePod(ctx, pod)
	}
	time.Sleep(mainRuns)
	ends := map[string]containerEnd{"main": exited(b.exitCode)}
	if b.lateWrites > 0 {
		if err := n.terminate(ctx, pod, ends); err != nil {
			return err
		}
		time.Sleep(b.lateWrites)
		if err := exec.reportOutputs(ctx); err != nil {
			return err
		}
		return exec.finalizeOutput(ctx)
	}
	if err := exec.reportOutputs(ctx); err != nil {
		return err
	}
	switch {
	case b.waitDies:
		// R5: FinalizeOutput gave up. Its failed attempts are not sent (they would not reach the
		// webhook: the label patch fails its matchConditions), and its error, added after
		// HasError() was evaluated, leaves the wait container's exit code 0.
	case b.waitKilled: // R3
		ends["wait"] = oomKilled
	default:
		failed := exec.failed // HasError() is evaluated before the deferred FinalizeOutput
		if err := exec.finalizeOutput(ctx); err != nil {
			return err
		}
		if failed {
			ends["wait"] = exited(exec.failureExitCode())
		}
	}
	time.Sleep(kubeletLag)
	return n.terminate(ctx, pod, ends)
}

// runMainOnlyPod plays a resource or data pod, whose main runs `argoexec resource` or
// `argoexec data`:
//
//   - v3.5.4 (execResource, execData): no InitializeOutput and no FinalizeOutput. On success,
//     SaveResourceParameters calls ReportOutputs only when the template has output parameters;
//     Data always does (it reports the result). A failure returns before that write.
//   - v3.5.5+ (PR #12544; v3.7.18 alike): InitializeOutput, the work, ReportOutputs as above
//     (skipped when the work failed), then the deferred FinalizeOutput, which runs when
//     execResource/execData return, failure or not, before the caller's log.Fatalf.
func (n *Node) runMainOnlyPod(ctx context.Context, pod *corev1.Pod, tmpl *template, b behaviour, exec *argoexec) error {
	reports := tmpl.kind() == "data" || len(parameters(tmpl.Outputs)) > 0
	if b.executor == ExecutorV354 || b.executor == ExecutorV351 {
		time.Sleep(mainRuns)
		code := b.exitCode
		if code == 0 && reports {
			if err := exec.reportOutputs(ctx); err != nil {
				return err
			}
			if exec.failed {
				code = exec.failureExitCode()
			}
		}
		time.Sleep(kubeletLag)
		return n.terminate(ctx, pod, map[string]containerEnd{"main": exited(code)})
	}
	if err := exec.initializeOutput(ctx); err != nil {
		return err
	}
	if b.podDeleted {
		time.Sleep(evictAfter)
		return n.deletePod(ctx, pod)
	}
	time.Sleep(mainRuns)
	if b.mainKilled != 0 { // R6: main dies before its deferred FinalizeOutput runs
		return n.terminate(ctx, pod, map[string]containerEnd{"main": exited(b.mainKilled)})
	}
	code := b.exitCode
	if code == 0 && reports {
		if err := exec.reportOutputs(ctx); err != nil {
			return err
		}
		if exec.reportFailed {
			code = exec.failureExitCode()
		}
	}
	if err := exec.finalizeOutput(ctx); err != nil {
		return err
	}
	time.Sleep(kubeletLag)
	return n.terminate(ctx, pod, map[string]containerEnd{"main": exited(code)})
}

// deletePod deletes the pod at once, as an eviction or a spot reclaim does (R4).
func (n *Node) deletePod(ctx context.Context, pod *corev1.Pod) error {
	err := n.Admin.Delete(ctx, pod, client.GracePeriodSeconds(0))
	n.record(pod.Name, Step{Actor: "eviction", Verb: "delete", Resource: "pods", Err: reason(err)})
	return err
}

// setRunning writes the Running status the kubelet would: every container running.
func (n *Node) setRunning(ctx context.Context, pod *corev1.Pod) error {
	return n.setStatus(ctx, pod, corev1.PodRunning, nil)
}

// terminate writes the final status: every container terminated as ends says (exit 0 when it
// does not name the container), and the pod Failed when any exit code is non-zero (restart
// policy Never), Succeeded otherwise.
func (n *Node) terminate(ctx context.Context, pod *corev1.Pod, ends map[string]containerEnd) error {
	phase := corev1.PodSucceeded
	for _, e := range ends {
		if e.code != 0 {
			phase = corev1.PodFailed
		}
	}
	return n.setStatus(ctx, pod, phase, ends)
}

func (n *Node) setStatus(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, ends map[string]containerEnd) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur corev1.Pod
		if err := n.Admin.Get(ctx, client.ObjectKeyFromObject(pod), &cur); err != nil {
			return err
		}
		now := metav1.Now()
		cur.Status.Phase = phase
		cur.Status.PodIP = "10.0.0.1"
		if cur.Status.StartTime == nil {
			cur.Status.StartTime = &now
		}
		status := func(c corev1.Container, init bool) corev1.ContainerStatus {
			s := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "containerd://" + string(cur.UID) + "-" + c.Name}
			if phase == corev1.PodRunning && !init {
				s.Ready, s.Started = true, ptr(true)
				s.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
				return s
			}
			end := exited(0)
			if e, ok := ends[c.Name]; ok && !init {
				end = e
			}
			s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: end.code, Reason: end.reason, StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
			return s
		}
		cur.Status.InitContainerStatuses, cur.Status.ContainerStatuses = nil, nil
		for _, c := range cur.Spec.InitContainers {
			cur.Status.InitContainerStatuses = append(cur.Status.InitContainerStatuses, status(c, true))
		}
		for _, c := range cur.Spec.Containers {
			cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, status(c, false))
		}
		return n.Admin.Status().Update(ctx, &cur)
	})
	detail := string(phase)
	for _, name := range []string{"main", "wait"} {
		if e, ok := ends[name]; ok && e.code != 0 {
			detail += fmt.Sprintf(" %s=%d(%s)", name, e.code, e.reason)
		}
	}
	n.record(pod.Name, Step{Actor: "kubelet", Verb: "update", Resource: "pods/status", Detail: detail, Err: reason(err)})
	return err
}

func ptr[T any](v T) *T { return &v }

// reason is the API status reason of err ("" for nil).
func reason(err error) string {
	if err == nil {
		return ""
	}
	if r := apierrors.ReasonForError(err); r != metav1.StatusReasonUnknown {
		return string(r)
	}
	return err.Error()
}

// argoexec is one simulated executor process: the requests of workflow/executor/taskresult.go
// (upsertTaskResult, createTaskResult, patchTaskResult, patchTaskResultLabels) and
// executor.go (InitializeOutput, ReportOutputs/reportResult, FinalizeOutput, AddAnnotation).
type argoexec struct {
	node    *Node
	pod     *corev1.Pod
	tmpl    *template
	version ExecutorBehaviour
	client  client.Client
	// refused: RBAC refuses every request of this executor (RBACRefusedAnnotation).
	refused bool
	// created is v3.7's taskResultCreated: set once a Create succeeded or met AlreadyExists.
	created bool
	// failed: an error was AddError'd (a refusal); reportFailed: ReportOutputs returned one.
	failed, reportFailed bool
}

// argoexec returns the pod's executor: the pod's service account (RefusedServiceAccount under
// RBACRefusedAnnotation), with the pod-name and pod-uid extras of a bound service-account token.
func (n *Node) argoexec(pod *corev1.Pod, tmpl *template, b behaviour) (*argoexec, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	if b.rbacRefused {
		sa = RefusedServiceAccount
	}
	cfg := rest.CopyConfig(n.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + pod.Namespace + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + pod.Namespace, "system:authenticated"},
		Extra: map[string][]string{
			rules.ExtraPodName:                     {pod.Name},
			"authentication.kubernetes.io/pod-uid": {string(pod.UID)},
		},
	}
	cfg.UserAgent = "argoexec/" + string(b.executor) + " (simulated)"
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	return &argoexec{node: n, pod: pod, tmpl: tmpl, version: b.executor, client: c, refused: b.rbacRefused}, nil
}

// failureExitCode is the exit code of an argoexec command that returns an error: log.Fatalf (1)
// in v3.5's wait and resource commands (and v3.5.5's data command); a cobra RunE error, which
// cmd/argoexec/main.go turns into os.Exit(64), in v3.5.4's data command and in every v3.7 command.
func (e *argoexec) failureExitCode() int32 {
	if e.version == ExecutorV37 || ((e.version == ExecutorV354 || e.version == ExecutorV351) && e.tmpl.kind() == "data") {
		return 64
	}
	return 1
}

// outcome checks the error of one argoexec call: a refusal is expected exactly when the pod's
// RBAC is refused, and is then AddError'd as argoexec does (it is not transient, so not
// retried); anything else unexpected is a node error.
func (e *argoexec) outcome(call string, err error) (refused bool, _ error) {
	switch {
	case e.refused && err == nil:
		return false, fmt.Errorf("%s: not refused although %s is set", call, RBACRefusedAnnotation)
	case e.refused && apierrors.IsForbidden(err):
		e.failed = true
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%s: %w", call, err)
	}
	return false, nil
}

// initializeOutput is InitializeOutput: upsert of an empty NodeResult (the placeholder; no
// outputs key). v3.5 falls back on 403 to the pod annotation report-outputs-completed "false".
func (e *argoexec) initializeOutput(ctx context.Context) error {
	const call = "InitializeOutput"
	if e.version == ExecutorV351 {
		return nil // no placeholder before v3.5.3
	}
	err := e.upsert(ctx, call, nil)
	if apierrors.IsForbidden(err) && e.version != ExecutorV37 {
		err = e.addAnnotation(ctx, call, rules.LabelReportOutputsCompleted, "false")
	}
	_, err = e.outcome(call, err)
	return err
}

// reportOutputs is ReportOutputs → reportResult: upsert of NodeResult{Outputs}, a copy of the
// template's outputs with the values filled in, so the body always carries an outputs key
// (possibly {}). v3.5 falls back on 403 to the pod annotation outputs (when HasOutputs) or
// report-outputs-completed "false". Its error is returned to the caller.
func (e *argoexec) reportOutputs(ctx context.Context) error {
	const call = "ReportOutputs"
	outputs, params := reportedOutputs(e.pod, e.tmpl)
	if e.version == ExecutorV351 && !hasOutputs(outputs) {
		return nil // v3.5.1's reportResult writes nothing without outputs
	}
	err := e.upsert(ctx, call, outputs)
	if apierrors.IsForbidden(err) && e.version != ExecutorV37 {
		if hasOutputs(outputs) {
			value, _ := json.Marshal(outputs)
			err = e.addAnnotation(ctx, call, "workflows.argoproj.io/outputs", string(value))
		} else {
			err = e.addAnnotation(ctx, call, rules.LabelReportOutputsCompleted, "false")
		}
	}
	refused, err := e.outcome(call, err)
	if err != nil {
		return err
	}
	if refused {
		e.reportFailed = true
		return nil
	}
	e.node.mu.Lock()
	e.node.outputs[e.pod.Name] = params
	e.node.mu.Unlock()
	return nil
}

// finalizeOutput is FinalizeOutput: patchTaskResultLabels, a JSON merge patch of the label
// report-outputs-completed "true" only. v3.5 falls back on 403 to the pod annotation "true".
func (e *argoexec) finalizeOutput(ctx context.Context) error {
	const call = "FinalizeOutput"
	if e.version == ExecutorV351 {
		return nil // no FinalizeOutput before v3.5.2
	}
	body := map[string]any{"metadata": map[string]any{"creationTimestamp": nil, "labels": map[string]string{rules.LabelReportOutputsCompleted: "true"}}}
	err := e.patch(ctx, call, "label", body)
	if apierrors.IsForbidden(err) && e.version != ExecutorV37 {
		err = e.addAnnotation(ctx, call, rules.LabelReportOutputsCompleted, "true")
	}
	_, err = e.outcome(call, err)
	return err
}

// upsert is upsertTaskResult. v3.5: createTaskResult, and patchTaskResult when the Create is
// rejected with AlreadyExists. v3.7 (#14618): the same until a Create has succeeded or met
// AlreadyExists; after that patchTaskResult, and createTaskResult when the patch meets NotFound.
func (e *argoexec) upsert(ctx context.Context, call string, outputs map[string]any) error {
	if e.version == ExecutorV37 && e.created {
		err := e.patchResult(ctx, call, outputs)
		if apierrors.IsNotFound(err) {
			return e.create(ctx, call, outputs)
		}
		return err
	}
	err := e.create(ctx, call, outputs)
	if apierrors.IsAlreadyExists(err) {
		return e.patchResult(ctx, call, outputs)
	}
	return err
}

// create is createTaskResult: the node's task result with labels workflow and
// report-outputs-completed "false" (plus controller-instanceid when ARGO_INSTANCE_ID is set),
// the Workflow owner reference, and the NodeResult fields at the top level.
func (e *argoexec) create(ctx context.Context, call string, outputs map[string]any) error {
	u := taskResultRef(e.pod)
	labels := map[string]string{
		rules.LabelWorkflow:               e.pod.Labels[rules.LabelWorkflow],
		rules.LabelReportOutputsCompleted: "false",
	}
	if e.version == ExecutorV351 {
		delete(labels, rules.LabelReportOutputsCompleted)
	}
	if v, ok := podEnv(e.pod, "ARGO_INSTANCE_ID"); ok && v != "" {
		labels["workflows.argoproj.io/controller-instanceid"] = v
	}
	u.SetLabels(labels)
	for _, o := range e.pod.OwnerReferences {
		if o.Kind == "Workflow" {
			u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}})
		}
	}
	if e.version == ExecutorV351 { // v3.3.2–v3.5.1: owned by the pod
		u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: e.pod.Name, UID: e.pod.UID}})
	}
	detail := ""
	if outputs != nil {
		u.Object["outputs"] = outputs
		detail = "outputs"
	}
	err := e.client.Create(ctx, u)
	e.node.record(e.pod.Name, Step{Actor: call, Verb: "create", Resource: "workflowtaskresults", Detail: detail, Err: reason(err)})
	e.created = err == nil || apierrors.IsAlreadyExists(err)
	return err
}

// patchResult is patchTaskResult: a JSON merge patch of the marshalled WorkflowTaskResult
// holding only the NodeResult, so it carries no labels (metav1.ObjectMeta marshals its zero
// creationTimestamp as null, which the API server ignores on update).
func (e *argoexec) patchResult(ctx context.Context, call string, outputs map[string]any) error {
	body := map[string]any{"metadata": map[string]any{"creationTimestamp": nil}}
	detail := ""
	if outputs != nil {
		body["outputs"] = outputs
		detail = "outputs"
	}
	return e.patch(ctx, call, detail, body)
}

func (e *argoexec) patch(ctx context.Context, call, detail string, body map[string]any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	err = e.client.Patch(ctx, taskResultRef(e.pod), client.RawPatch(types.MergePatchType, data))
	e.node.record(e.pod.Name, Step{Actor: call, Verb: "patch", Resource: "workflowtaskresults", Detail: detail, Err: reason(err)})
	return err
}

// addAnnotation is v3.5's AddAnnotation: a JSON merge patch of one pod annotation, the legacy
// fallback for a refused task-result write.
func (e *argoexec) addAnnotation(ctx context.Context, call, key, value string) error {
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"creationTimestamp": nil, "annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: e.pod.Namespace, Name: e.pod.Name}}
	err = e.client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, data))
	e.node.record(e.pod.Name, Step{Actor: call, Verb: "patch", Resource: "pods", Detail: key, Err: reason(err)})
	return err
}

// reportedOutputs returns what ReportOutputs sends, a copy of the template's outputs with values
// filled in, and the output parameters by name. Parameters with a valueFrom get a value (a
// resource's jsonPath '{.metadata.name}' resolves to a generated name, anything else to a fixed
// value); data templates get their result (Data sets Outputs.Result), script and container
// templates theirs only when the controller asked for it (ARGO_INCLUDE_SCRIPT_OUTPUT,
// CaptureScriptResult). The exit code is not reported: the controller reads it from the pod.
func reportedOutputs(pod *corev1.Pod, tmpl *template) (map[string]any, map[string]string) {
	out := map[string]any{}
	if raw, err := json.Marshal(tmpl.Outputs); err == nil && tmpl.Outputs != nil {
		_ = json.Unmarshal(raw, &out) // a deep copy of decoded JSON cannot fail
	}
	values := map[string]string{}
	for _, p := range parameters(out) {
		name, _ := p["name"].(string)
		valueFrom, hasValueFrom := p["valueFrom"].(map[string]any)
		switch {
		case !hasValueFrom:
		case tmpl.kind() == "resource" && valueFrom["jsonPath"] == "{.metadata.name}":
			p["value"] = "cm-" + string(pod.UID)[:8] // the generated name of the created object
		default:
			p["value"] = "value-of-" + name
		}
		if v, ok := p["value"].(string); ok {
			values[name] = v
		}
	}
	include, _ := podEnv(pod, "ARGO_INCLUDE_SCRIPT_OUTPUT")
	switch {
	case tmpl.kind() == "data":
		out["result"] = `["file-a","file-b"]`
	case tmpl.auxiliary() && include == "true":
		out["result"] = "stdout of main"
	}
	return out, values
}

// parameters returns outputs.parameters as JSON objects (nil when there are none).
func parameters(outputs map[string]any) []map[string]any {
	list, _ := outputs["parameters"].([]any)
	var params []map[string]any
	for _, p := range list {
		if m, ok := p.(map[string]any); ok {
			params = append(params, m)
		}
	}
	return params
}

// hasOutputs is Outputs.HasOutputs: result, exit code, parameters or artifacts present.
func hasOutputs(outputs map[string]any) bool {
	for _, k := range []string{"result", "exitCode", "parameters", "artifacts"} {
		if _, ok := outputs[k]; ok {
			return true
		}
	}
	return false
}

func taskResultRef(pod *corev1.Pod) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("WorkflowTaskResult")
	u.SetNamespace(pod.Namespace)
	u.SetName(pod.Annotations[rules.AnnotationNodeID])
	return u
}
