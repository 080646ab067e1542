package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// When the webhook completes a task result, the Workflow gets an Event naming the rule and the
// node; recording it adds nothing to the write's latency at the API server. The same #12985
// creates go to a server with Events and to one without, interleaved in rounds so the machine's
// load hits both alike.
func TestEventsOnTheWorkflowWithoutAddedLatency(t *testing.T) {
	ctx := context.Background()
	const ns, rounds, perRound = "events", 4, 30
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	// Two fresh servers: the suite's own has spent its Event budget (10/s, burst 100) on earlier
	// tests' writes, and would drop some of these Events as designed.
	start := func(name string, disableEvents bool) *harness.Webhook {
		w, err := harness.StartWebhook(harness.WebhookOptions{Dir: filepath.Join(t.TempDir(), name), Kubeconfig: kubeconfig,
			Mode: webhook.ModeEnforce, ControllerUsernames: []string{controllerSA}, DisableEvents: disableEvents, Log: harness.SuiteLogger()})
		require.NoError(t, err)
		t.Cleanup(w.Stop)
		return w
	}
	loud, quiet := start("loud", false), start("quiet", true)
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	executor, _ := clientAs(t, executorSA, "")

	var with, without []time.Duration
	var withEvents, withoutEvents []string // workflow names
	i := 0
	for r := range rounds {
		events := r%2 == 0
		server := quiet
		if events {
			server = loud
		}
		require.NoError(t, harness.Register(ctx, admin, server, ns))
		for range perRound {
			i++
			n := newNode(t, fmt.Sprintf("events-%d", i), false)
			createPod(t, ns, n)
			start := time.Now()
			require.NoError(t, executor.Create(ctx, taskResult(ns, n, "false", resourceOutputs("x"))))
			took := time.Since(start)
			v, _ := persistedLabel(t, ns, n)
			require.Equal(t, "true", v, "A1 patched")
			if events {
				with, withEvents = append(with, took), append(withEvents, n.workflow)
			} else {
				without, withoutEvents = append(without, took), append(withoutEvents, n.workflow)
			}
		}
	}

	reasons := func(wf string) []string {
		var list corev1.EventList
		require.NoError(t, admin.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{"involvedObject.name": wf}))
		var out []string
		for _, e := range list.Items {
			out = append(out, e.InvolvedObject.Kind+" "+e.Reason+": "+e.Message)
		}
		return out
	}
	for _, wf := range withEvents {
		want := fmt.Sprintf("Workflow %s: argo-completion-webhook rule A1 set %s=true on task result %s-3571860313: outputs written by a resource or data pod, which never finalizes (argo-workflows#12985)",
			webhook.ReasonTaskResultCompleted, webhook.LabelReportOutputsCompleted, wf)
		require.Eventually(t, func() bool { return slices.Contains(reasons(wf), want) }, 15*time.Second, 100*time.Millisecond,
			"the Event on workflow %s: %v", wf, reasons(wf))
	}
	for _, wf := range withoutEvents {
		assert.Empty(t, reasons(wf), "no Event from the server with --events=false")
	}

	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	fmt.Printf("events: task-result create p50 %s with Events, %s without (difference %s); %d writes each, %d Events checked\n",
		p50(with).Round(10*time.Microsecond), p50(without).Round(10*time.Microsecond),
		(p50(with) - p50(without)).Round(10*time.Microsecond), len(with), len(withEvents))
	assert.Less(t, p50(with)-p50(without), 3*time.Millisecond, "recording Events adds nothing measurable to the admission latency")
}
