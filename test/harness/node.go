package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// ExecutorBehaviour selects which argoexec the simulated node imitates for resource and data
// templates. Container templates always follow the wait-container sequence.
type ExecutorBehaviour string

const (
	// ExecutorV354 is argoexec v3.5.2–v3.5.4: `argoexec resource` and `argoexec data` make one
	// write, a Create with outputs and report-outputs-completed "false", and never finalize
	// (execResource/execData without FinalizeOutput: argo-workflows#12985).
	ExecutorV354 ExecutorBehaviour = "v3.5.4"
	// ExecutorV355 is argoexec v3.5.5+ (PR #12544): InitializeOutput (placeholder Create), then
	// ReportOutputs (merge patch of outputs), then the deferred FinalizeOutput (label patch).
	ExecutorV355 ExecutorBehaviour = "v3.5.5"
)

// ExecutorAnnotation on a pod (set through a workflow's spec.podMetadata) overrides the node's
// Executor for that pod, so a control run can use the fixed executor beside the buggy one.
const ExecutorAnnotation = "e2e.argo-completion-webhook.io/executor"

// ExitCodeAnnotation on a template's metadata (copied to its pod) makes the simulated main
// container exit with that code; a non-zero code fails the pod, as a failed resource does.
const ExitCodeAnnotation = "e2e.argo-completion-webhook.io/exit-code"

// Node stands in for a kubelet and for argoexec, since no kubelet runs here. It watches the pods
// Argo's controller creates in one namespace and, for each:
//
//  1. as the kubelet, moves the pod to Running (containers running);
//  2. as argoexec, under the pod's service account with the pod-name extra a bound token
//     carries, writes the node's WorkflowTaskResult through the API exactly as argoexec's
//     code path for the template type does (see writeTaskResult);
//  3. as the kubelet, moves the pod to Succeeded (or Failed) with every container terminated
//     and main's exit code, the shape podReconciliation/assessNodeStatus reads.
//
// It records each pod's main command line (with input parameters substituted by the controller)
// and the output parameters it reported, so tests can check that no output was lost between steps.
type Node struct {
	// Admin acts as the kubelet (pod status) and reads pods.
	Admin client.Client
	// Config is the base config from which executor clients impersonate service accounts.
	Config *rest.Config
	// Namespace is where the controller runs pods.
	Namespace string
	// Executor selects the argoexec behaviour for resource and data templates.
	Executor ExecutorBehaviour
	// Logf receives one line per step; nil discards.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	seen    map[types.UID]bool
	args    map[string]string            // pod name → main container's command line, inputs substituted
	outputs map[string]map[string]string // pod name → output parameter name → value reported
	errs    []error
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

// Errors returns the errors the node met (a failed executor write is a test failure).
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

// Run polls for new workflow pods every 100 ms until ctx ends, running each in a goroutine.
func (n *Node) Run(ctx context.Context) {
	n.mu.Lock()
	n.seen = map[types.UID]bool{}
	n.args = map[string]string{}
	n.outputs = map[string]map[string]string{}
	n.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var pods corev1.PodList
		if err := n.Admin.List(ctx, &pods, client.InNamespace(n.Namespace), client.HasLabels{webhook.LabelWorkflow}); err == nil {
			for i := range pods.Items {
				pod := pods.Items[i]
				n.mu.Lock()
				isNew := !n.seen[pod.UID]
				n.seen[pod.UID] = true
				n.mu.Unlock()
				if isNew {
					wg.Go(func() {
						if err := n.runPod(ctx, &pod); err != nil && ctx.Err() == nil {
							n.mu.Lock()
							n.errs = append(n.errs, fmt.Errorf("pod %s: %w", pod.Name, err))
							n.mu.Unlock()
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
	Outputs   struct {
		Parameters []struct {
			Name      string `json:"name"`
			ValueFrom *struct {
				JSONPath string `json:"jsonPath"`
				Path     string `json:"path"`
			} `json:"valueFrom"`
		} `json:"parameters"`
	} `json:"outputs"`
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

// podTemplate reads ARGO_TEMPLATE: on every container in v3.5, only on the init container from
// v3.7 (argoexec reads it there and shares it through the /var/run/argo volume).
func podTemplate(pod *corev1.Pod) (*template, error) {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.Name == "ARGO_TEMPLATE" {
				if e.Value == "offloaded" {
					return nil, fmt.Errorf("ARGO_TEMPLATE offloaded to a ConfigMap: not simulated")
				}
				var t template
				if err := json.Unmarshal([]byte(e.Value), &t); err != nil {
					return nil, fmt.Errorf("ARGO_TEMPLATE: %w", err)
				}
				return &t, nil
			}
		}
	}
	return nil, fmt.Errorf("no ARGO_TEMPLATE in any container")
}

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
	exitCode := int32(0)
	if v := pod.Annotations[ExitCodeAnnotation]; v != "" {
		_, _ = fmt.Sscanf(v, "%d", &exitCode)
	}
	n.logf("node: pod %s (%s template) → Running", pod.Name, tmpl.kind())
	if err := n.setStatus(ctx, pod, corev1.PodRunning, -1); err != nil {
		return err
	}
	if exitCode == 0 {
		if err := n.writeTaskResult(ctx, pod, tmpl); err != nil {
			return err
		}
	}
	time.Sleep(300 * time.Millisecond) // main's own work, after the executor's last write
	phase := corev1.PodSucceeded
	if exitCode != 0 {
		phase = corev1.PodFailed
	}
	n.logf("node: pod %s → %s (exit %d)", pod.Name, phase, exitCode)
	return n.setStatus(ctx, pod, phase, exitCode)
}

// setStatus writes the pod status the kubelet would: Running with running containers, or
// Succeeded/Failed with every container terminated (main with exitCode, the rest 0).
func (n *Node) setStatus(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, exitCode int32) error {
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
		switch {
		case phase == corev1.PodRunning && !init:
			s.Ready, s.Started = true, ptr(true)
			s.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
		default:
			code, reason := int32(0), "Completed"
			if c.Name == "main" && exitCode > 0 {
				code, reason = exitCode, "Error"
			}
			s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
		}
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
}

func ptr[T any](v T) *T { return &v }

// executorClient returns a client acting as argoexec in the pod: the pod's service account, with
// the pod-name and pod-uid extras of a bound service-account token.
func (n *Node) executorClient(pod *corev1.Pod) (client.Client, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	cfg := rest.CopyConfig(n.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + pod.Namespace + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + pod.Namespace, "system:authenticated"},
		Extra: map[string][]string{
			webhook.ExtraPodName:                   {pod.Name},
			"authentication.kubernetes.io/pod-uid": {string(pod.UID)},
		},
	}
	cfg.UserAgent = "argoexec/v0.0.0 (simulated)"
	return client.New(cfg, client.Options{})
}

// writeTaskResult makes the WorkflowTaskResult writes of argoexec for the template type
// (workflow/executor/taskresult.go upsertTaskResult/patchTaskResult/patchTaskResultLabels):
//
//   - container and script (wait container, waitContainer → FinalizeOutput): InitializeOutput's
//     placeholder Create, ReportOutputs' merge patch of outputs, FinalizeOutput's label patch;
//   - resource and data under ExecutorV354 (execResource → SaveResourceParameters →
//     ReportOutputs → createTaskResult, or Data → ReportOutputs): one Create with outputs and
//     "false", made only when there is something to report, and no FinalizeOutput;
//   - resource and data under ExecutorV355 (PR #12544): placeholder Create, outputs patch (when
//     there are outputs), deferred FinalizeOutput label patch.
func (n *Node) writeTaskResult(ctx context.Context, pod *corev1.Pod, tmpl *template) error {
	c, err := n.executorClient(pod)
	if err != nil {
		return err
	}
	executor := n.Executor
	if v := pod.Annotations[ExecutorAnnotation]; v != "" {
		executor = ExecutorBehaviour(v)
	}
	outputs := simulatedOutputs(pod, tmpl)
	reported := map[string]string{}
	if params, ok := outputs["parameters"].([]any); ok {
		for _, p := range params {
			p := p.(map[string]any)
			reported[p["name"].(string)] = p["value"].(string)
		}
	}
	n.mu.Lock()
	n.outputs[pod.Name] = reported
	n.mu.Unlock()
	kind := tmpl.kind()
	auxiliary := kind == "container" || kind == "script"
	if !auxiliary && executor == ExecutorV354 {
		if outputs == nil {
			n.logf("node: pod %s: argoexec v3.5.4 %s reports nothing (no outputs)", pod.Name, kind)
			return nil
		}
		n.logf("node: pod %s: argoexec v3.5.4 %s → Create with outputs, label \"false\" (never finalized)", pod.Name, kind)
		return c.Create(ctx, taskResultObject(pod, outputs))
	}
	who := "wait container"
	if !auxiliary {
		who = "argoexec v3.5.5+ " + kind
	}
	n.logf("node: pod %s: %s → placeholder, outputs, label", pod.Name, who)
	if err := c.Create(ctx, taskResultObject(pod, nil)); err != nil {
		return fmt.Errorf("InitializeOutput: %w", err)
	}
	if outputs != nil { // a wait container always reports (exitCode); a resource may have nothing
		patch, _ := json.Marshal(map[string]any{"outputs": outputs})
		if err := c.Patch(ctx, taskResultRef(pod), client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("ReportOutputs: %w", err)
		}
	}
	label := `{"metadata":{"labels":{"` + webhook.LabelReportOutputsCompleted + `":"true"}}}`
	if err := c.Patch(ctx, taskResultRef(pod), client.RawPatch(types.MergePatchType, []byte(label))); err != nil {
		return fmt.Errorf("FinalizeOutput: %w", err)
	}
	return nil
}

// simulatedOutputs returns the outputs argoexec would report: output parameters (a resource's
// jsonPath '{.metadata.name}' resolves to a generated name, any other to a fixed value), the
// result of data and script templates, and main's exit code for pods with a wait container.
// nil means there is nothing to report.
func simulatedOutputs(pod *corev1.Pod, tmpl *template) map[string]any {
	out := map[string]any{}
	var params []any
	for _, p := range tmpl.Outputs.Parameters {
		value := "value-of-" + p.Name
		if p.ValueFrom != nil && p.ValueFrom.JSONPath == "{.metadata.name}" {
			value = "cm-" + string(pod.UID)[:8] // the generated name of the created object
		}
		params = append(params, map[string]any{"name": p.Name, "value": value})
	}
	if params != nil {
		out["parameters"] = params
	}
	switch tmpl.kind() {
	case "data":
		out["result"] = `["file-a","file-b"]`
	case "script":
		out["result"] = "42"
	}
	if tmpl.kind() == "container" || tmpl.kind() == "script" {
		out["exitCode"] = "0"
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func taskResultRef(pod *corev1.Pod) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("argoproj.io/v1alpha1")
	u.SetKind("WorkflowTaskResult")
	u.SetNamespace(pod.Namespace)
	u.SetName(pod.Annotations[webhook.AnnotationNodeID])
	return u
}

// taskResultObject is createTaskResult's object: labels workflow and "false", the Workflow owner.
func taskResultObject(pod *corev1.Pod, outputs map[string]any) *unstructured.Unstructured {
	u := taskResultRef(pod)
	u.SetLabels(map[string]string{
		webhook.LabelWorkflow:               pod.Labels[webhook.LabelWorkflow],
		webhook.LabelReportOutputsCompleted: "false",
	})
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" {
			u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}})
		}
	}
	if outputs != nil {
		u.Object["outputs"] = outputs
	}
	return u
}
