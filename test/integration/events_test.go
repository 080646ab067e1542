package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
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
	// The admission latency itself, as the API server measures each call to the webhook.
	var admissionWith, admissionWithout admissionTime
	// The webhook's own handling time (controller-runtime's histogram; one server is registered
	// at a time, so a round's delta is that server's).
	var handlerWith, handlerWithout admissionTime
	i := 0
	for r := range rounds {
		events := r%2 == 0
		server := quiet
		if events {
			server = loud
		}
		require.NoError(t, harness.Register(ctx, admin, server, ns))
		before, handlerBefore := taskResultAdmission(t), handlerTime(t, server)
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
		spent, handled := taskResultAdmission(t).minus(before), handlerTime(t, server).minus(handlerBefore)
		if events {
			admissionWith, handlerWith = admissionWith.plus(spent), handlerWith.plus(handled)
		} else {
			admissionWithout, handlerWithout = admissionWithout.plus(spent), handlerWithout.plus(handled)
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
			rules.ReasonTaskResultCompleted, rules.LabelReportOutputsCompleted, wf)
		require.Eventually(t, func() bool { return slices.Contains(reasons(wf), want) }, 15*time.Second, 100*time.Millisecond,
			"the Event on workflow %s: %v", wf, reasons(wf))
	}
	for _, wf := range withoutEvents {
		assert.Empty(t, reasons(wf), "no Event from the server with --events=false")
	}

	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	fmt.Printf("events: webhook handling mean %s with Events, %s without (%.0f and %.0f calls); as the API server times the call %s and %s; the executor's create p50 %s and %s; %d Events checked\n",
		handlerWith.mean().Round(time.Microsecond), handlerWithout.mean().Round(time.Microsecond), handlerWith.count, handlerWithout.count,
		admissionWith.mean().Round(10*time.Microsecond), admissionWithout.mean().Round(10*time.Microsecond),
		p50(with).Round(10*time.Microsecond), p50(without).Round(10*time.Microsecond), len(withEvents))
	require.GreaterOrEqual(t, handlerWith.count, float64(rounds/2*perRound), "every create was handled by the webhook")
	require.GreaterOrEqual(t, handlerWithout.count, float64(rounds/2*perRound), "every create was handled by the webhook")
	// The Event is only queued (for another goroutine) on the request path: the webhook's own
	// handling must not grow. A synchronous Event write would add a whole API request to it.
	assert.Less(t, handlerWith.mean()-handlerWithout.mean(), time.Millisecond, "recording Events adds nothing to the webhook's handling time")
}

// handlerTime reads controller-runtime's histogram of the task-result endpoint's handling time
// from w's /metrics (the registry is shared by the servers of this process).
func handlerTime(t *testing.T, w *harness.Webhook) admissionTime {
	t.Helper()
	sum, err := harness.Scrape(w.Metrics, `controller_runtime_webhook_latency_seconds_sum{webhook="`+webhook.TaskResultPath+`"}`)
	require.NoError(t, err)
	count, err := harness.Scrape(w.Metrics, `controller_runtime_webhook_latency_seconds_count{webhook="`+webhook.TaskResultPath+`"}`)
	require.NoError(t, err)
	return admissionTime{sum: sum, count: count}
}

// admissionTime is the sum and count of the API server's admission-webhook duration histogram.
type admissionTime struct{ sum, count float64 }

func (a admissionTime) minus(b admissionTime) admissionTime {
	return admissionTime{a.sum - b.sum, a.count - b.count}
}
func (a admissionTime) plus(b admissionTime) admissionTime {
	return admissionTime{a.sum + b.sum, a.count + b.count}
}
func (a admissionTime) mean() time.Duration {
	if a.count == 0 {
		return 0
	}
	return time.Duration(a.sum / a.count * float64(time.Second))
}

// taskResultAdmission reads, from the API server's own /metrics, the time it has spent calling the
// task-result webhook on CREATE.
func taskResultAdmission(t *testing.T) admissionTime {
	t.Helper()
	rc, err := rest.RESTClientFor(metricsConfig(t))
	require.NoError(t, err)
	raw, err := rc.Get().AbsPath("/metrics").DoRaw(context.Background())
	require.NoError(t, err)
	var a admissionTime
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_") ||
			!strings.Contains(line, `name="workflowtaskresults.argo-completion-webhook.io"`) || !strings.Contains(line, `operation="CREATE"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		require.NoError(t, err)
		switch {
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_sum{"):
			a.sum += v
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_count{"):
			a.count += v
		}
	}
	return a
}

// metricsConfig is the admin's config made fit for a plain REST client.
func metricsConfig(t *testing.T) *rest.Config {
	t.Helper()
	cfg := rest.CopyConfig(adminCfg)
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	return cfg
}
