package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	argorules "github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// runbookPage is the page every alert's runbook_url points into, at the alert's own heading.
const runbookPage = "https://github.com/argo-completion-webhook/argo-completion-webhook/blob/main/README.md"

// alertNames are the alerts of the README's Monitoring section.
var alertNames = []string{
	"ArgoCompletionWebhookDown",
	"ArgoCompletionWebhookNotReady",
	"ArgoCompletionWebhookFailingOpen",
	"ArgoCompletionWebhookLookupErrors",
	"ArgoCompletionWebhookBadRequests",
	"ArgoCompletionWebhookCertificateExpiring",
	"ArgoCompletionRepairFailing",
}

// monitoringSources are the renderings with a PrometheusRule: the kustomize component, the chart
// with monitoring on, and the chart under another release and namespace.
var monitoringSources = []source{
	kustomize("deploy", monitoringComponent),
	chart("ci/monitoring-values.yaml"),
	chartAs("wh", "platform", "ci/monitoring-values.yaml"),
}

// alertRule is one rule of a rendered PrometheusRule, with what Prometheus' parser made of it.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	parsed      parsedRule
}

// parsedRule is bin/promql's result for a rule (test/tools/promql).
type parsedRule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Error     string `json:"error"`
	Selectors []struct {
		Metric   string `json:"metric"`
		Matchers []struct {
			Label, Type, Value string
		} `json:"matchers"`
	} `json:"selectors"`
}

// alertRules returns the rules of every PrometheusRule in objs, each parsed by bin/promql:
// Prometheus' own parser.
func alertRules(t *testing.T, objs []*unstructured.Unstructured) []alertRule {
	t.Helper()
	var rules []alertRule
	for _, o := range objs {
		if o.GetKind() != "PrometheusRule" {
			continue
		}
		groups, _, err := unstructured.NestedSlice(o.Object, "spec", "groups")
		require.NoError(t, err)
		for _, g := range groups {
			data, err := json.Marshal(g.(map[string]any)["rules"])
			require.NoError(t, err)
			var rs []alertRule
			require.NoError(t, json.Unmarshal(data, &rs))
			rules = append(rules, rs...)
		}
	}
	require.NotEmpty(t, rules, "the rendering has a PrometheusRule with rules")
	var in []map[string]string
	for _, r := range rules {
		in = append(in, map[string]string{"name": r.Alert, "expr": r.Expr, "for": r.For})
	}
	data, err := json.Marshal(in)
	require.NoError(t, err)
	cmd := exec.Command(toolBin("promql"))
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "bin/promql: %s", stderr.String())
	var parsed []parsedRule
	require.NoError(t, json.Unmarshal(out, &parsed))
	require.Len(t, parsed, len(rules))
	for i := range rules {
		rules[i].parsed = parsed[i]
	}
	return rules
}

// readmeAnchors are the anchors GitHub gives the README's headings: lower case, punctuation
// dropped, spaces turned into hyphens.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	defer f.Close()
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	anchors := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if title, ok := strings.CutPrefix(sc.Text(), "#"); ok {
			title = strings.TrimSpace(strings.TrimLeft(title, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(title), ""), " ", "-")] = true
		}
	}
	require.NoError(t, sc.Err())
	return anchors
}

func TestAlertsParseAndCarryWhatOperatorsNeed(t *testing.T) {
	anchors := readmeAnchors(t)
	for _, src := range monitoringSources {
		t.Run(src.name, func(t *testing.T) {
			var names []string
			for _, r := range alertRules(t, render(t, src)) {
				names = append(names, r.Alert)
				assert.Empty(t, r.parsed.Error, "%s: Prometheus' parser accepts the expression and the for duration", r.Alert)
				assert.Equal(t, "vector", r.parsed.Type, "%s: an alert's expression is an instant vector", r.Alert)
				assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "%s has a severity", r.Alert)
				assert.NotEmpty(t, r.Annotations["summary"], "%s has a summary", r.Alert)
				assert.NotEmpty(t, r.Annotations["description"], "%s has a description", r.Alert)
				page, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
				assert.Equal(t, runbookPage, page, "%s: the runbook is the README", r.Alert)
				assert.Equal(t, strings.ToLower(r.Alert), anchor, "%s: the runbook is the alert's own entry", r.Alert)
				assert.True(t, anchors[anchor], "%s: the README has a heading for #%s", r.Alert, anchor)
			}
			assert.Equal(t, alertNames, names, "the alerts, in the README's order")
		})
	}
}

// selectorTarget says, for a metric an alert selects, which label matchers must name what in the
// install: the Service's job, the Deployment, the CronJob, the serving Certificate, the webhook
// configuration's webhook names. A metric missing here is one nobody said the source of.
func selectorTarget(t *testing.T, metric string, objs []*unstructured.Unstructured, namespace string) (equal map[string]string, regexMatches []string) {
	t.Helper()
	// name is the name of the one rendered object of kind (of the serving Certificate).
	name := func(kind string) string {
		var names []string
		for _, o := range objs {
			if o.GetKind() == kind && (kind != "Certificate" || strings.HasSuffix(o.GetName(), "-serving")) {
				names = append(names, o.GetName())
			}
		}
		require.Len(t, names, 1, "one %s rendered", kind)
		return names[0]
	}
	switch {
	case metric == "up" || strings.HasPrefix(metric, "argo_completion_webhook_"):
		// Scraped by the ServiceMonitor: Prometheus names the job after the Service.
		return map[string]string{"job": name("Service"), "namespace": namespace}, nil
	case strings.HasPrefix(metric, "kube_deployment_"): // kube-state-metrics
		return map[string]string{"namespace": namespace, "deployment": name("Deployment")}, nil
	case strings.HasPrefix(metric, "kube_cronjob_"): // kube-state-metrics
		return map[string]string{"namespace": namespace, "cronjob": name("CronJob")}, nil
	case metric == "certmanager_certificate_expiration_timestamp_seconds": // cert-manager's controller
		return map[string]string{"name": name("Certificate")}, nil
	case metric == "apiserver_admission_webhook_fail_open_count": // the API server
		mwc := find(t, objs, "MutatingWebhookConfiguration", name("MutatingWebhookConfiguration"))
		hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
		for _, h := range hooks {
			regexMatches = append(regexMatches, h.(map[string]any)["name"].(string))
		}
		return nil, regexMatches
	}
	t.Errorf("an alert selects %s: add who exports it, and what it must select, to selectorTarget", metric)
	return nil, nil
}

func TestAlertsSelectWhatTheInstallExports(t *testing.T) {
	for _, src := range monitoringSources {
		t.Run(src.name, func(t *testing.T) {
			objs := render(t, src)
			for _, r := range alertRules(t, objs) {
				require.Empty(t, r.parsed.Error)
				for _, s := range r.parsed.Selectors {
					equal, regexMatches := selectorTarget(t, s.Metric, objs, src.namespace)
					got := map[string]string{}
					var regex []string
					for _, m := range s.Matchers {
						switch m.Type {
						case "=":
							got[m.Label] = m.Value
						case "=~":
							regex = append(regex, m.Value)
						}
					}
					for label, value := range equal {
						assert.Equal(t, value, got[label], "%s: %s{%s=...} selects the install's", r.Alert, s.Metric, label)
					}
					if s.Metric == "certmanager_certificate_expiration_timestamp_seconds" {
						// The Certificate's namespace is exported_namespace behind cert-manager's
						// ServiceMonitor (honorLabels false), namespace with honorLabels.
						ns := got["exported_namespace"]
						if ns == "" {
							ns = got["namespace"]
						}
						assert.Equal(t, src.namespace, ns, "%s: %s selects the Certificate's namespace", r.Alert, s.Metric)
					}
					for _, want := range regexMatches {
						require.Len(t, regex, 1, "%s: %s selects by one regular expression", r.Alert, s.Metric)
						assert.Regexp(t, "^(?:"+regex[0]+")$", want, "%s: %s selects webhook %s", r.Alert, s.Metric, want)
					}
				}
			}
		})
	}
}

// exposed returns the metric names of a Prometheus text exposition.
func exposed(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	require.NoError(t, sc.Err())
	return names
}

// The metrics the alerts read from the webhook are on the path the ServiceMonitor scrapes, and
// the API server's fail-open counter carries the webhook names the alert selects, as a real
// webhook server and API server export them.
func TestAlertMetricsAreExportedUnderTheNamesTheySelect(t *testing.T) {
	ctx := context.Background()
	objs := render(t, kustomize("deploy", monitoringComponent))
	rules := alertRules(t, objs)

	// The ServiceMonitor's endpoint is the Service's metrics port, which is the container's, on
	// which --metrics-bind-address serves.
	sm := find(t, objs, "ServiceMonitor", "argo-completion-webhook")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.Len(t, endpoints, 1)
	endpoint := endpoints[0].(map[string]any)
	ports, _, _ := unstructured.NestedSlice(find(t, objs, "Service", "argo-completion-webhook").Object, "spec", "ports")
	var target any
	for _, p := range ports {
		if p.(map[string]any)["name"] == endpoint["port"] {
			target = p.(map[string]any)["targetPort"]
		}
	}
	require.NotNil(t, target, "the Service has the ServiceMonitor's port %v", endpoint["port"])
	hookOpts := webhookOptions(t, objs)
	containers, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "argo-completion-webhook").Object, "spec", "template", "spec", "containers")
	var containerPort any
	for _, p := range containers[0].(map[string]any)["ports"].([]any) {
		if p.(map[string]any)["name"] == target {
			containerPort = p.(map[string]any)["containerPort"]
		}
	}
	assert.Equal(t, hookOpts.MetricsBindAddress, fmt.Sprintf(":%v", containerPort),
		"the Service's target port is where the webhook serves /metrics")

	// A real webhook serves every argo_completion_webhook_* metric the alerts read at that path.
	hook, err := harness.StartWebhook(harness.WebhookOptions{Dir: t.TempDir(), RESTConfig: adminCfg, Mode: webhook.ModeEnforce})
	require.NoError(t, err)
	defer hook.Stop()
	metricsURL := strings.TrimSuffix(hook.Metrics, "/metrics") + endpoint["path"].(string)
	resp, err := http.Get(metricsURL)
	require.NoError(t, err)
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	served := exposed(t, body.Bytes())
	for _, r := range rules {
		for _, s := range r.parsed.Selectors {
			if strings.HasPrefix(s.Metric, "argo_completion_webhook_") {
				assert.True(t, served[s.Metric], "%s reads %s, which the webhook serves at %s", r.Alert, s.Metric, endpoint["path"])
			}
		}
	}

	// The API server counts a write it let through because it could not call the webhook.
	require.NoError(t, harness.RegisterTaskResultsUnreachable(ctx, admin, hook))
	defer func() { require.NoError(t, harness.Unregister(ctx, admin)) }()
	const ns = "fail-open"
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
		"metadata": map[string]any{"name": "wf-1", "namespace": ns, "labels": map[string]any{
			argorules.LabelWorkflow: "wf", argorules.LabelReportOutputsCompleted: "false"}},
		"outputs": map[string]any{"parameters": []any{map[string]any{"name": "p", "value": "v"}}},
	}}
	require.NoError(t, admin.Create(ctx, tr), "the write goes through: failurePolicy Ignore")
	assert.Equal(t, "false", tr.GetLabels()[argorules.LabelReportOutputsCompleted], "unpatched: the webhook was not called")
	cs, err := kubernetes.NewForConfig(adminCfg)
	require.NoError(t, err)
	var failOpen []string
	require.Eventually(t, func() bool {
		raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return false
		}
		failOpen = failOpen[:0]
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), `apiserver_admission_webhook_fail_open_count{name="`); ok {
				name, _, _ := strings.Cut(rest, `"`)
				failOpen = append(failOpen, name)
			}
		}
		return len(failOpen) > 0
	}, 10*time.Second, 200*time.Millisecond, "the API server exports apiserver_admission_webhook_fail_open_count")
	var regex string
	for _, r := range rules {
		for _, s := range r.parsed.Selectors {
			if s.Metric == "apiserver_admission_webhook_fail_open_count" {
				for _, m := range s.Matchers {
					if m.Label == "name" {
						regex = m.Value
					}
				}
			}
		}
	}
	require.NotEmpty(t, regex, "an alert reads apiserver_admission_webhook_fail_open_count by webhook name")
	assert.Contains(t, failOpen, "workflowtaskresults.argo-completion-webhook.io")
	for _, name := range failOpen {
		assert.Regexp(t, "^(?:"+regex+")$", name, "the alert selects the API server's series for %s", name)
	}
}
