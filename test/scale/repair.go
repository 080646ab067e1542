package main

import (
	"bufio"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
)

// The cluster `make repair-scale` builds: repairWorkflows workflows of podsPerWorkflow Pod nodes
// each (20,000 pods), in four shapes interleaved by name, every shapeCycle workflows:
//
//   - running (half): Running, every pod running, no task result yet. The repair's list of
//     running pods passes them over unread.
//   - completed (a quarter): Succeeded and labelled completed=true, every pod Succeeded, task
//     results "true". The label selector leaves them on the API server.
//   - waiting (49 in 200): Running at a Suspend node (an approval step) after its ten pods
//     Succeeded with task results "true". Read in full, not stuck.
//   - stuck (1 in 200): Succeeded with completed=false (the v3.5.4 shape), every pod Succeeded
//     10+ minutes ago, task results "false" with outputs (#12985). Read in full, reported.
//
// So 10,000 task results: 9,900 "true", 100 "false"; 500 workflows read in full.
const (
	repairWorkflows   = 2000
	shapeCycle        = 200
	runningPerCycle   = 100
	completedPerCycle = 50
	stuckPerCycle     = 1
)

// shape is a workflow's state in the cluster the run builds.
type shape int

const (
	shapeRunning shape = iota
	shapeCompleted
	shapeWaiting
	shapeStuck
)

// shapeOf returns workflow w's shape.
func shapeOf(w int) shape {
	switch k := w % shapeCycle; {
	case k < runningPerCycle:
		return shapeRunning
	case k < runningPerCycle+completedPerCycle:
		return shapeCompleted
	case k < shapeCycle-stuckPerCycle:
		return shapeWaiting
	}
	return shapeStuck
}

// repairUser is the account the repair runs as: the audit policy records its requests only.
const repairUser = "repair-scale"

// auditPolicy records, without bodies, every request of repairUser and nothing else, once each
// (at ResponseComplete).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + repairUser + `"]
- level: None
`

var (
	workflowGVR   = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}
	taskResultGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtaskresults"}
)

// repairMain is `make repair-scale`: it builds the cluster above on the test control plane, runs
// the built binary's `repair --all-namespaces` (report only) as repairUser, and measures its wall
// time, peak RSS, CPU time, API requests (from the API server's audit log) and progress lines.
func repairMain(args []string) error {
	fs := flag.NewFlagSet("repair", flag.ContinueOnError)
	workers := fs.Int("workers", 8, "concurrent writers while building the cluster")
	out := fs.String("out", ".work/repair-scale.txt", "where to write the table (relative to the repository root)")
	bin := fs.String("bin", "bin/argo-completion-webhook", "the binary (make build)")
	baseline := fs.Bool("baseline", false, "also run with client-go's default rate limit (--qps 5 --burst 10): ~5 more minutes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	binPath := filepath.Join(root, *bin)
	if _, err := os.Stat(binPath); err != nil {
		return fmt.Errorf("%s not found: run `make build`", binPath)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "acw-repair-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	crds, err := controlplane.ArgoCRDPaths(controlplane.ArgoVersion)
	if err != nil {
		return err
	}
	policy, auditLog := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return err
	}
	env, adminKubeconfig, cs, err := startControlPlane(dir, func(env *envtest.Environment) {
		env.CRDDirectoryPaths, env.ErrorIfCRDPathMissing = crds, true
		env.ControlPlane.APIServer = &envtest.APIServer{}
		env.ControlPlane.APIServer.Configure().Set("audit-policy-file", policy).Set("audit-log-path", auditLog)
	})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	logf("control plane up (kube-apiserver %s, Argo %s CRDs)", controlplane.KubernetesVersion(), controlplane.ArgoVersion)
	user, err := env.AddUser(envtest.User{Name: repairUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	repairKubeconfig := filepath.Join(dir, "repair.kubeconfig")
	if err := os.WriteFile(repairKubeconfig, kc, 0o600); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}

	t0 := time.Now()
	if err := buildCluster(ctx, cs, dyn, *workers, t0); err != nil {
		return err
	}
	built := time.Since(t0)
	logf("cluster built in %s", built.Round(time.Second))

	variants := []struct {
		name string
		args []string
	}{{"as shipped (--qps 50 --burst 100)", nil}}
	if *baseline {
		variants = append(variants, struct {
			name string
			args []string
		}{"client-go's defaults (--qps 5 --burst 10)", []string{"--qps", "5", "--burst", "10"}})
	}
	var results []repairResult
	for _, v := range variants {
		reportPath := filepath.Join(root, ".work", "repair-scale-report-"+strconv.Itoa(len(results))+".txt")
		r, err := runRepair(ctx, binPath, repairKubeconfig, auditLog, reportPath, v.args)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		r.name = v.name
		logf("%s: %s, peak RSS %s, %d requests, %d progress lines", v.name, r.wall.Round(time.Millisecond), mib(r.maxRSSKiB), r.requests, len(r.progress))
		results = append(results, r)
	}

	var buf bytes.Buffer
	writeRepairTable(&buf, results, built, *workers)
	fmt.Print(buf.String())
	path := filepath.Join(root, *out)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// buildCluster creates the executors' RBAC, the Workflows, their pods (created, then their
// status written as the kubelet would) and the task results of the pods that ended.
func buildCluster(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, workers int, now time.Time) error {
	// The executor's rights, as Argo's executor Role grants them, so no node reads R2.
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "executor"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"argoproj.io"}, Resources: []string{"workflowtaskresults"},
			Verbs: []string{"create", "patch"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "executor", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "executor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: namespace}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}

	uids := make([]types.UID, repairWorkflows)
	t := time.Now()
	if err := parallel(ctx, repairWorkflows, workers, func(w int) error {
		wf, err := dyn.Resource(workflowGVR).Namespace(namespace).Create(ctx, workflowObject(w, now), metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating workflow %d: %w", w, err)
		}
		uids[w] = wf.GetUID()
		return nil
	}); err != nil {
		return err
	}
	logf("created %d workflows in %s", repairWorkflows, time.Since(t).Round(time.Second))

	pods := repairWorkflows * podsPerWorkflow
	t = time.Now()
	var done atomic.Int64
	if err := parallel(ctx, pods, workers, func(i int) error {
		w := i / podsPerWorkflow
		n := nodeOf(i)
		pod := argoPod(i, argoTemplate(n.workflow))
		pod.OwnerReferences[0].UID = uids[w]
		created, err := cs.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating pod %d: %w", i, err)
		}
		ended := shapeOf(w) != shapeRunning
		setStatus(created, i, ended)
		if ended {
			endedLongAgo(created, now)
		}
		if _, err := cs.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("writing the status of pod %d: %w", i, err)
		}
		if d := done.Add(1); d%5000 == 0 {
			logf("  %d pods", d)
		}
		return nil
	}); err != nil {
		return err
	}
	logf("created %d pods in %s", pods, time.Since(t).Round(time.Second))

	t = time.Now()
	var results, falses atomic.Int64
	if err := parallel(ctx, pods, workers, func(i int) error {
		w := i / podsPerWorkflow
		s := shapeOf(w)
		if s == shapeRunning {
			return nil
		}
		label := "true"
		if s == shapeStuck {
			label = "false"
			falses.Add(1)
		}
		if _, err := dyn.Resource(taskResultGVR).Namespace(namespace).Create(ctx, taskResultObject(i, uids[w], label), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating the task result of pod %d: %w", i, err)
		}
		results.Add(1)
		return nil
	}); err != nil {
		return err
	}
	logf("created %d task results (%d \"false\") in %s", results.Load(), falses.Load(), time.Since(t).Round(time.Second))
	return nil
}

// parallel calls f(0..n-1) from workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

// The times of an ended workflow, relative to the run: it started 20 minutes before and its pods
// ended 15 minutes before, past the repair's grace periods (2 and 10 minutes).
const (
	startedBefore = 20 * time.Minute
	endedBefore   = 15 * time.Minute
)

// endedLongAgo moves the pod's container times to endedBefore the run.
func endedLongAgo(pod *corev1.Pod, now time.Time) {
	started, finished := metav1.NewTime(now.Add(-startedBefore)), metav1.NewTime(now.Add(-endedBefore))
	pod.Status.StartTime = &started
	for _, ss := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for j := range ss {
			if t := ss[j].State.Terminated; t != nil {
				t.StartedAt, t.FinishedAt = started, finished
			}
		}
	}
}

// workflowObject is workflow w as Argo v3.5's controller leaves it in its shape: labels, a steps
// template fanning out to podsPerWorkflow pods, and status.nodes (the Steps root, its Pod
// nodes, and for a waiting one its Suspend node) with taskResultsCompletionStatus.
func workflowObject(w int, now time.Time) *unstructured.Unstructured {
	s := shapeOf(w)
	name := nodeOf(w * podsPerWorkflow).workflow
	ts := func(d time.Duration) string { return now.Add(-d).UTC().Format(time.RFC3339) }
	ended := s != shapeRunning
	phase, completed := "Running", "false"
	switch s {
	case shapeCompleted:
		phase, completed = "Succeeded", "true"
	case shapeStuck:
		phase = "Succeeded"
	}
	var children []any
	nodes := map[string]any{}
	completion := map[string]any{}
	for k := range podsPerWorkflow {
		n := nodeOf(w*podsPerWorkflow + k)
		children = append(children, n.id)
		nd := map[string]any{"id": n.id, "name": fmt.Sprintf("%s[0].shard(%d)", name, k), "displayName": fmt.Sprintf("shard(%d)", k),
			"type": "Pod", "templateName": "process", "templateScope": "local/" + name, "phase": "Running", "boundaryID": name,
			"startedAt": ts(startedBefore), "finishedAt": nil, "hostNodeName": fmt.Sprintf("node-%02d", k),
			"inputs": map[string]any{"parameters": []any{map[string]any{"name": "shard", "value": strconv.Itoa(k)}}}}
		if ended {
			nd["phase"], nd["finishedAt"], nd["progress"] = "Succeeded", ts(endedBefore), "1/1"
			nd["resourcesDuration"] = map[string]any{"cpu": 6, "memory": 42}
			nd["outputs"] = map[string]any{"parameters": []any{map[string]any{"name": "result", "value": "42", "valueFrom": map[string]any{"path": "/tmp/result"}}},
				"exitCode": "0"}
			// The controller's completion entry: true once it saw the task result complete.
			completion[n.id] = s != shapeStuck
		}
		nodes[n.id] = nd
	}
	root := map[string]any{"id": name, "name": name, "displayName": name, "type": "Steps", "templateName": "main",
		"templateScope": "local/" + name, "phase": phase, "startedAt": ts(startedBefore), "finishedAt": nil, "children": children}
	if s == shapeWaiting {
		id := name + "-3982712945"
		nodes[id] = map[string]any{"id": id, "name": name + "[1].approve", "displayName": "approve", "type": "Suspend",
			"templateName": "approve", "templateScope": "local/" + name, "phase": "Running", "boundaryID": name, "startedAt": ts(endedBefore)}
	}
	status := map[string]any{"phase": phase, "startedAt": ts(startedBefore), "finishedAt": nil,
		"progress": fmt.Sprintf("%d/%d", len(completion), podsPerWorkflow), "nodes": nodes,
		"conditions": []any{map[string]any{"type": "PodRunning", "status": strconv.FormatBool(s == shapeRunning)}}}
	if phase != "Running" {
		root["finishedAt"], status["finishedAt"] = ts(endedBefore), ts(endedBefore)
		status["conditions"] = append(status["conditions"].([]any), map[string]any{"type": "Completed", "status": "True"})
	}
	nodes[name] = root
	if len(completion) > 0 {
		status["taskResultsCompletionStatus"] = completion
	}
	templates := []any{
		map[string]any{"name": "main", "steps": []any{
			[]any{map[string]any{"name": "shard", "template": "process", "withSequence": map[string]any{"count": strconv.Itoa(podsPerWorkflow)},
				"arguments": map[string]any{"parameters": []any{map[string]any{"name": "shard", "value": "{{item}}"}}}}},
			[]any{map[string]any{"name": "approve", "template": "approve"}},
		}},
		map[string]any{"name": "process", "inputs": map[string]any{"parameters": []any{map[string]any{"name": "shard"}}},
			"outputs":   map[string]any{"parameters": []any{map[string]any{"name": "result", "valueFrom": map[string]any{"path": "/tmp/result"}}}},
			"container": map[string]any{"image": "alpine:3.19", "command": []any{"sh", "-c"}, "args": []any{"echo processing shard {{inputs.parameters.shard}}"}}},
		map[string]any{"name": "approve", "suspend": map[string]any{}},
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
		"metadata": map[string]any{"name": name, "namespace": namespace,
			"labels": map[string]any{rules.LabelCompleted: completed, rules.LabelPhase: phase,
				"workflows.argoproj.io/creator": "system-serviceaccount-argo-argo-server"},
			"annotations": map[string]any{"workflows.argoproj.io/pod-name-format": "v2"}},
		"spec":   map[string]any{"entrypoint": "main", "arguments": map[string]any{}, "templates": templates},
		"status": status,
	}}
}

// taskResultObject is pod i's task result as argoexec leaves it: named after the node, labelled
// with its workflow and report-outputs-completed, owned by the Workflow, with the outputs.
func taskResultObject(i int, workflowUID types.UID, label string) *unstructured.Unstructured {
	n := nodeOf(i)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": n.id, "namespace": namespace,
			"labels": map[string]any{rules.LabelWorkflow: n.workflow, rules.LabelReportOutputsCompleted: label},
			"ownerReferences": []any{map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
				"name": n.workflow, "uid": string(workflowUID)}}},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "result", "value": "42",
			"valueFrom": map[string]any{"path": "/tmp/result"}}}, "exitCode": "0"},
	}}
}

// repairResult is what one repair run measured.
type repairResult struct {
	name      string
	wall      time.Duration
	cpu       time.Duration // user + system
	maxRSSKiB int64         // ru_maxrss of the exited process
	polledKiB int64         // the highest VmHWM read from /proc while it ran
	requests  int
	byKind    map[string]int // "verb resource" → requests
	agents    map[string]int // user agent → requests
	progress  []string
	summary   []string // the report's summary lines
	rows      int      // the report's rows
}

// runRepair runs `bin repair --all-namespaces` (report only, table output to reportPath) as
// repairUser and measures it; its requests are the audit log's events added meanwhile.
func runRepair(ctx context.Context, bin, kubeconfig, auditLog, reportPath string, extra []string) (repairResult, error) {
	var res repairResult
	before, err := auditEvents(auditLog)
	if err != nil {
		return res, err
	}
	report, err := os.Create(reportPath)
	if err != nil {
		return res, err
	}
	defer report.Close()
	var progress bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"repair", "--all-namespaces", "--kubeconfig", kubeconfig}, extra...)...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "GOGC" && k != "GOMEMLIMIT" && k != "GODEBUG" && !strings.HasPrefix(k, "KUBE_FEATURE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = report, &progress
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	// VmHWM while it runs, as a cross-check of ru_maxrss.
	pid := strconv.Itoa(cmd.Process.Pid)
	exited, polling := make(chan struct{}), make(chan struct{})
	var polled int64
	go func() {
		defer close(polling)
		for {
			if _, hwm, err := memory(pid); err == nil && hwm > polled {
				polled = hwm
			}
			select {
			case <-exited:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	res.wall = time.Since(start)
	close(exited)
	<-polling
	if err != nil {
		return res, fmt.Errorf("%w: %s (report in %s)", err, progress.String(), reportPath)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	res.maxRSSKiB, res.polledKiB = ru.Maxrss, polled // ru_maxrss is in KiB on Linux
	res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	res.progress = strings.Split(strings.TrimSpace(progress.String()), "\n")

	// Every request completed before the process exited; give the audit log a moment to be
	// written out, until two reads agree.
	var after []auditEvent
	for prev := -1; ; prev = len(after) {
		time.Sleep(500 * time.Millisecond)
		if after, err = auditEvents(auditLog); err != nil {
			return res, err
		}
		if len(after) == prev {
			break
		}
	}
	res.byKind, res.agents = map[string]int{}, map[string]int{}
	for _, e := range after[len(before):] {
		res.requests++
		kind := e.Verb + " " + e.ObjectRef.Resource
		if e.ObjectRef.Resource == "" {
			kind = e.Verb + " (non-resource URL: discovery)"
		}
		if e.ObjectRef.Subresource != "" {
			kind += "/" + e.ObjectRef.Subresource
		}
		res.byKind[kind]++
		res.agents[e.UserAgent]++
	}

	if _, err := report.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	sc := bufio.NewScanner(report)
	inSummary := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "workflow(s) not completed"):
			inSummary = true
			res.summary = append(res.summary, line)
		case inSummary:
			res.summary = append(res.summary, line)
		case line != "" && !strings.HasPrefix(line, "NAMESPACE"):
			res.rows++
		}
	}
	return res, sc.Err()
}

// auditEvent is what the run reads of an audit event.
type auditEvent struct {
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	Stage     string `json:"stage"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
}

// auditEvents reads the audit log's completed requests of repairUser ("" file: none yet).
func auditEvents(path string) ([]auditEvent, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []auditEvent
	for line := range bytes.Lines(b) {
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("reading the audit log %s: %w", path, err)
		}
		if e.Stage == "ResponseComplete" && e.User.Username == repairUser {
			out = append(out, e)
		}
	}
	return out, nil
}

func writeRepairTable(w io.Writer, results []repairResult, built time.Duration, workers int) {
	shapes := map[shape]int{}
	for wf := range repairWorkflows {
		shapes[shapeOf(wf)]++
	}
	pods := repairWorkflows * podsPerWorkflow
	falses := shapes[shapeStuck] * podsPerWorkflow
	trues := (shapes[shapeCompleted] + shapes[shapeWaiting]) * podsPerWorkflow
	fmt.Fprintf(w, "repair at scale: `argo-completion-webhook repair --all-namespaces` (report only) on kube-apiserver %s with Argo %s's CRDs\n",
		controlplane.KubernetesVersion(), controlplane.ArgoVersion)
	fmt.Fprintf(w, "cluster: %d workflows of %d Pod nodes, %d Argo-like pods, %d task results (%d \"true\", %d \"false\"); built in %s by %d writers\n",
		repairWorkflows, podsPerWorkflow, pods, trues+falses, trues, falses, built.Round(time.Second), workers)
	fmt.Fprintf(w, "  %d Running with every pod running (passed over by the running-pods list), %d Succeeded and completed=true (left out by the label selector),\n",
		shapes[shapeRunning], shapes[shapeCompleted])
	fmt.Fprintf(w, "  %d Running at a Suspend node after their pods Succeeded (read in full, not stuck), %d Succeeded with completed=false and task results \"false\" (stuck)\n",
		shapes[shapeWaiting], shapes[shapeStuck])
	fmt.Fprintln(w, "peak RSS: ru_maxrss of the exited process (the highest VmHWM polled from /proc every 20 ms in brackets)")
	fmt.Fprintln(w, "API requests: the API server's audit log (Metadata level, ResponseComplete events of the repair's own user)")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\twall\tCPU\tpeak RSS\tAPI requests\tprogress lines\treport rows")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s (%s)\t%d (%.0f/s)\t%d\t%d\n", r.name, r.wall.Round(10*time.Millisecond), r.cpu.Round(10*time.Millisecond),
			mib(r.maxRSSKiB), mib(r.polledKiB), r.requests, float64(r.requests)/r.wall.Seconds(), len(r.progress), r.rows)
	}
	_ = tw.Flush()
	for _, r := range results {
		fmt.Fprintf(w, "\n%s\nrequests by verb and resource:\n", r.name)
		kinds := make([]string, 0, len(r.byKind))
		for k := range r.byKind {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			fmt.Fprintf(w, "  %-40s %d\n", k, r.byKind[k])
		}
		for a, n := range r.agents {
			fmt.Fprintf(w, "  user agent %q: %d\n", a, n)
		}
		fmt.Fprintln(w, "progress lines (stderr):")
		for _, l := range r.progress {
			fmt.Fprintln(w, "  "+l)
		}
		fmt.Fprintln(w, "report summary (stdout):")
		for _, l := range r.summary {
			fmt.Fprintln(w, "  "+l)
		}
	}
}
