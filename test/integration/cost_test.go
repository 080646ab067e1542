package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// The latency the webhook adds at the API server to an executor's outputs write (the #12985
// create). The goal (#14): at most 1 ms at p50, taken as the median of several interleaved runs.
// The webhook is the shipped binary in its own process, as in a cluster (the suite's in-process
// server would be timed with the race detector's instrumentation), once as shipped and once with
// --events=false, since the Event it records on each change is one more API write per write.
// Each run goes through the three sides in a palindrome (A B C C B A, starting one further along
// on each run), so drift in the machine's load hits all alike; a side's added latency is its p50
// minus the unregistered side's. A round's pods are created before its writes, as the executor
// writes at the end of its pod's life, long after the webhook's cache has seen the pod.
//
// Beside each run's figures, where the time goes, as means over the registered rounds: the
// webhook's own handling (controller-runtime's histogram, from the binary's /metrics), the API
// server's whole call of it (its admission-webhook histogram: encoding the review, the HTTPS round
// trip, decoding and applying the patch) and its matchConditions; the Events queued; the pod LISTs
// the API server served (lookups of pods the webhook's cache had not seen, expected none); and the
// new TCP connections to each webhook (the API server reuses one; each new one is a TLS handshake).
func TestAPIServerLatencyWithAndWithoutTheWebhook(t *testing.T) {
	ctx := context.Background()
	const ns, runs, perRound = "cost", 5, 25
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	executor, _ := clientAs(t, executorSA, "")
	bin := buildBinary(t)
	type side struct {
		name string
		hook *harness.Webhook // nil: unregistered
		port string
		// one run's
		took                  []time.Duration
		handling, call, match admissionTime
		events, lists         float64
		conns                 map[string]bool
		// all runs'
		all, added []time.Duration
	}
	sides := []*side{{name: "without"}, {name: "with the webhook"}, {name: "with --events=false"}}
	sides[1].hook, sides[1].port = startBinaryWebhook(t, bin)
	sides[2].hook, sides[2].port = startBinaryWebhook(t, bin, "--events=false")
	i := 0
	for run := range runs {
		for _, s := range sides {
			s.took, s.handling, s.call, s.match, s.events, s.lists = nil, admissionTime{}, admissionTime{}, admissionTime{}, 0, 0
			s.conns = connections(s.port)
		}
		order := append(slices.Clone(sides[run%3:]), sides[:run%3]...)
		for _, s := range append(order, reversed(order)...) {
			if s.hook == nil {
				require.NoError(t, unregister(ctx))
			} else {
				require.NoError(t, harness.Register(ctx, admin, s.hook, argoNS))
			}
			nodes := make([]node, perRound)
			for k := range nodes {
				i++
				nodes[k] = newNode(t, fmt.Sprintf("cost-%d", i), false)
				createPod(t, ns, nodes[k])
			}
			var handled admissionTime
			var events float64
			if s.hook != nil {
				handled, events = handlerTime(t, s.hook), eventsQueued(t, s.hook)
			}
			api, lists := apiServerMetrics(t), podLists(t)
			for _, n := range nodes {
				start := time.Now()
				require.NoError(t, executor.Create(ctx, taskResult(ns, n, "false", resourceOutputs("x"))))
				s.took = append(s.took, time.Since(start))
				v, _ := persistedLabel(t, ns, n)
				if s.hook != nil {
					require.Equal(t, "true", v, "patched while registered")
				} else {
					require.Equal(t, "false", v, "not called while unregistered")
				}
			}
			if s.hook != nil {
				now := apiServerMetrics(t)
				s.handling = s.handling.plus(handlerTime(t, s.hook).minus(handled))
				s.call, s.match = s.call.plus(now.call.minus(api.call)), s.match.plus(now.match.minus(api.match))
				s.events += eventsQueued(t, s.hook) - events
				s.lists += float64(podLists(t) - lists)
			}
		}
		for _, s := range sides {
			s.all = append(s.all, s.took...)
		}
		base := p50(sides[0].took)
		line := fmt.Sprintf("api-server cost run %d: create p50 %s (p99 %s) without", run+1, us(base), us(p99(sides[0].took)))
		for _, s := range sides[1:] {
			d := p50(s.took) - base
			s.added = append(s.added, d)
			line += fmt.Sprintf("; %s p50 %s (added %s, p99 %s): webhook handling %s, the API server's call %s, matchConditions %s (%.0f calls), %.0f Events queued, %.0f pod LISTs, %s new connections",
				s.name, us(p50(s.took)), us(d), us(p99(s.took)), us(s.handling.mean()), us(s.call.mean()), s.match.mean().Round(time.Microsecond),
				s.call.count, s.events, s.lists, newConnections(s.conns, connections(s.port)))
		}
		fmt.Println(line)
	}
	shipped, quiet := p50(sides[1].added), p50(sides[2].added)
	fmt.Printf("api-server cost: median added p50 over %d runs %s with the webhook as shipped %v, %s with --events=false %v; all runs' p50 (p99) %s (%s) without, %s (%s) as shipped, %s (%s) with --events=false, %d writes each\n",
		runs, us(shipped), rounded(sides[1].added), us(quiet), rounded(sides[2].added),
		us(p50(sides[0].all)), us(p99(sides[0].all)), us(p50(sides[1].all)), us(p99(sides[1].all)), us(p50(sides[2].all)), us(p99(sides[2].all)), len(sides[0].all))
	// The goal is ≤ 1 ms; medians measured 0.49–0.95 ms on this 2-core machine (kube-apiserver
	// 1.37.2 and 1.30.14). The bound leaves room for a busy machine and still fails when the
	// call's cost grows by half (a lookup off the cache, a handshake per call).
	assert.LessOrEqual(t, quiet, 1500*time.Microsecond, "the admission call adds little at p50 (goal ≤ 1 ms, #14)")
	// As shipped, each change also sends an Event (10/s after a burst of 100): one more API write,
	// which on a 2-core machine competes with the write being timed. Measured here at 1.1–2.0 ms
	// in all, against 0.5–0.8 ms without the Events; the bound catches, say, a synchronous write.
	assert.LessOrEqual(t, shipped, 3*time.Millisecond, "the webhook and its Events add little to a write")
}

func reversed[S ~[]E, E any](s S) S { s = slices.Clone(s); slices.Reverse(s); return s }

func rounded(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = us(v)
	}
	return out
}

// eventsQueued reads how many Events w has queued to send.
func eventsQueued(t *testing.T, w *harness.Webhook) float64 {
	t.Helper()
	v, err := harness.Scrape(w.Metrics, `argo_completion_webhook_events_total{result="queued"}`)
	require.NoError(t, err)
	return v
}

func p50(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
func p99(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)*99/100]
}
func us(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// startBinaryWebhook runs bin, the webhook as it ships (built without the race detector), in its
// own process with a fresh CA and args added to its flags, until the test ends; it returns what
// Register needs of it and its port.
func startBinaryWebhook(t *testing.T, bin string, args ...string) (*harness.Webhook, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	require.NoError(t, ca.WriteServing(dir, "127.0.0.1"))
	port, err := harness.FreePort()
	require.NoError(t, err)
	probe, err := harness.FreePort()
	require.NoError(t, err)
	probes := "127.0.0.1:" + strconv.Itoa(probe)
	logs := &bytes.Buffer{}
	cmd := exec.Command(bin, append([]string{"--cert-dir", dir, "--kubeconfig", kubeconfig,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--controller-usernames", controllerSA,
		"--health-probe-bind-address", probes, "--metrics-bind-address", probes}, args...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("webhook %v logs:\n%s", args, logs.String())
		}
	})
	require.Eventually(t, func() bool { return harness.HTTPStatus("http://"+probes+"/readyz") == http.StatusOK }, 30*time.Second, 50*time.Millisecond, "ready")
	return &harness.Webhook{URL: "https://127.0.0.1:" + strconv.Itoa(port), Metrics: "http://" + probes + "/metrics", Probes: "http://" + probes, CAPEM: ca.PEM}, strconv.Itoa(port)
}

// apiServerCounts are the API server's histograms of the task-result webhook on CREATE: the whole
// call, and the evaluation of its matchConditions.
type apiServerCounts struct{ call, match admissionTime }

func apiServerMetrics(t *testing.T) apiServerCounts {
	t.Helper()
	var c apiServerCounts
	for _, line := range apiServerMetricLines(t) {
		if !strings.Contains(line, `name="workflowtaskresults.argo-completion-webhook.io"`) || !strings.Contains(line, `operation="CREATE"`) {
			continue
		}
		for prefix, h := range map[string]*admissionTime{
			"apiserver_admission_webhook_admission_duration_seconds": &c.call,
			"apiserver_admission_match_condition_evaluation_seconds": &c.match,
		} {
			switch {
			case strings.HasPrefix(line, prefix+"_sum{"):
				h.sum += lastValue(t, line)
			case strings.HasPrefix(line, prefix+"_count{"):
				h.count += lastValue(t, line)
			}
		}
	}
	return c
}

// podLists counts the namespaced pod LISTs the API server has served: the webhook's lookups of
// pods its cache has not seen yet (and nothing else in this suite).
func podLists(t *testing.T) int {
	t.Helper()
	n := 0
	for _, line := range apiServerMetricLines(t) {
		if strings.HasPrefix(line, "apiserver_request_total{") && strings.Contains(line, `resource="pods"`) &&
			strings.Contains(line, `scope="namespace"`) && strings.Contains(line, `verb="LIST"`) {
			n += int(lastValue(t, line))
		}
	}
	return n
}

func apiServerMetricLines(t *testing.T) []string {
	t.Helper()
	rc, err := rest.RESTClientFor(metricsConfig(t))
	require.NoError(t, err)
	raw, err := rc.Get().AbsPath("/metrics").DoRaw(context.Background())
	require.NoError(t, err)
	return strings.Split(string(raw), "\n")
}

func lastValue(t *testing.T, line string) float64 {
	t.Helper()
	fields := strings.Fields(line)
	v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
	require.NoError(t, err)
	return v
}

// connections returns the loopback TCP connections to port that the kernel lists, open or in
// TIME_WAIT (which outlives a closed connection by a minute), keyed by their other end; nil where
// /proc/net/tcp cannot be read.
func connections(port string) map[string]bool {
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil
	}
	defer f.Close()
	hex := fmt.Sprintf(":%04X", p)
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch local, remote := fields[1], fields[2]; {
		case strings.HasSuffix(local, hex):
			seen[remote] = true
		case strings.HasSuffix(remote, hex):
			seen[local] = true
		}
	}
	return seen
}

// newConnections counts the connections in after that were not in before, or "unknown" without
// /proc/net/tcp.
func newConnections(before, after map[string]bool) string {
	if after == nil {
		return "unknown"
	}
	n := 0
	for k := range after {
		if !before[k] {
			n++
		}
	}
	return strconv.Itoa(n)
}
