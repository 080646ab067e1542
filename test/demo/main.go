// Command demo shows argo-workflows#12985 and its fix on a local control plane: a real
// kube-apiserver + etcd, Argo's real workflow-controller v3.5.4 and the simulated node of the e2e
// suite. It submits the #12985 workflow (a resource template with outputs.parameters and
// ttlStrategy.secondsAfterCompletion: 5) twice, without then with the webhook, and prints what
// happened to each. Every process it starts is stopped before it exits. Run it with `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

const (
	namespace   = "demo"
	argoVersion = "v3.5.4"
	// observe is how long the run without the webhook is watched after the pod finished.
	observe = 20 * time.Second
)

func main() {
	logf.SetLogger(logr.Discard())
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// outcome is one row of the table.
type outcome struct {
	run, workflow, phase, completed, taskResult, deleted string
	gone                                                 bool
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	logDir := filepath.Join(root, ".work", "demo")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "acw-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("starting the control plane: kube-apiserver " + controlplane.KubernetesVersion() + " + etcd on 127.0.0.1")
	cluster, err := harness.StartCluster(dir)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()
	if err := cluster.SetupNamespace(ctx, namespace); err != nil {
		return err
	}
	step("starting Argo's workflow-controller " + argoVersion + " and the simulated node (kubelet + argoexec " + argoVersion + ")")
	ctrl, err := harness.StartController(ctx, cluster.Admin, argoVersion, cluster.ControllerKubeconfig, namespace, logDir)
	if err != nil {
		return err
	}
	defer ctrl.Stop()
	node := &harness.Node{Admin: cluster.Admin, Config: cluster.Config, Namespace: namespace, Executor: harness.ExecutorV354}
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	go node.Run(nodeCtx)

	step("submitting the #12985 workflow WITHOUT the webhook")
	without, err := submitAndWatch(ctx, cluster.Admin, false)
	if err != nil {
		return err
	}

	step("starting argo-completion-webhook and registering deploy/base/mutatingwebhookconfiguration.yaml")
	hookLog, err := os.Create(filepath.Join(logDir, "argo-completion-webhook.log"))
	if err != nil {
		return err
	}
	defer hookLog.Close()
	hook, err := harness.StartWebhook(harness.WebhookOptions{
		Dir: filepath.Join(dir, "webhook"), Kubeconfig: cluster.WebhookKubeconfig, Mode: webhook.ModeEnforce,
		ControllerUsernames: []string{harness.ControllerUser}, Log: fileLogger(hookLog),
	})
	if err != nil {
		return err
	}
	defer hook.Stop()
	if err := harness.Register(ctx, cluster.Admin, hook, namespace); err != nil {
		return err
	}
	step("submitting the same workflow WITH the webhook")
	with, err := submitAndWatch(ctx, cluster.Admin, true)
	if err != nil {
		return err
	}

	fmt.Printf("\nArgo workflow-controller %s, executor behaviour of argoexec %s (resource template with outputs.parameters, ttlStrategy 5s):\n\n", argoVersion, argoVersion)
	fmt.Printf("%-16s %-24s %-10s %-10s %-26s %s\n", "run", "workflow", "phase", "completed", "report-outputs-completed", "deleted by TTL?")
	for _, o := range []outcome{without, with} {
		fmt.Printf("%-16s %-24s %-10s %-10s %-26s %s\n", o.run, o.workflow, o.phase, o.completed, o.taskResult, o.deleted)
	}
	fmt.Printf("\nlogs: %s (workflow-controller, argo-completion-webhook)\n", logDir)
	if without.gone || without.completed != "false" || with.completed != "true" || !with.gone {
		return fmt.Errorf("unexpected outcome: the run without the webhook should stay stuck and the run with it complete")
	}
	return nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

// submitAndWatch submits testdata's #12985 workflow and follows it: without the webhook, until
// its pod finished and then for the observation window; with it, until Argo's TTL deletes it.
func submitAndWatch(ctx context.Context, admin client.Client, withWebhook bool) (outcome, error) {
	root, _ := controlplane.RepoRoot()
	f, err := os.Open(filepath.Join(root, "test", "e2e", "testdata", "resource-outputs.yaml"))
	if err != nil {
		return outcome{}, err
	}
	defer f.Close()
	wf := &unstructured.Unstructured{}
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&wf.Object); err != nil {
		return outcome{}, err
	}
	wf.SetNamespace(namespace)
	if err := admin.Create(ctx, wf); err != nil {
		return outcome{}, err
	}
	o := outcome{run: "without webhook", workflow: wf.GetName(), deleted: "no"}
	if withWebhook {
		o.run = "with webhook"
	}
	start := time.Now()
	var podDone time.Time
	for {
		if err := ctx.Err(); err != nil {
			return o, err
		}
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(wf.GroupVersionKind())
		err := admin.Get(ctx, client.ObjectKeyFromObject(wf), cur)
		switch {
		case apierrors.IsNotFound(err):
			o.deleted, o.gone = fmt.Sprintf("yes, %.0fs after submit", time.Since(start).Seconds()), true
			return o, nil
		case err != nil:
			return o, err
		}
		o.phase, _, _ = unstructured.NestedString(cur.Object, "status", "phase")
		o.completed = cur.GetLabels()[rules.LabelCompleted]
		if label := taskResultLabel(ctx, admin, wf.GetName()); label != "" {
			o.taskResult = label
		}
		if podDone.IsZero() && podSucceeded(ctx, admin, wf.GetName()) {
			podDone = time.Now()
		}
		if !withWebhook && !podDone.IsZero() && time.Since(podDone) > observe {
			o.deleted = fmt.Sprintf("no (watched %.0fs after its pod finished)", observe.Seconds())
			return o, nil
		}
		if time.Since(start) > 3*time.Minute {
			return o, fmt.Errorf("workflow %s: no outcome within 3 minutes", wf.GetName())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func taskResultLabel(ctx context.Context, admin client.Client, wf string) string {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("argoproj.io/v1alpha1")
	list.SetKind("WorkflowTaskResultList")
	if err := admin.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{rules.LabelWorkflow: wf}); err != nil || len(list.Items) == 0 {
		return ""
	}
	return list.Items[0].GetLabels()[rules.LabelReportOutputsCompleted]
}

func podSucceeded(ctx context.Context, admin client.Client, wf string) bool {
	var pods corev1.PodList
	if err := admin.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{rules.LabelWorkflow: wf}); err != nil || len(pods.Items) == 0 {
		return false
	}
	return pods.Items[0].Status.Phase == corev1.PodSucceeded
}
