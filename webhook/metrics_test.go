package webhook

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// Servers in one process (the integration suites run several) each count their own requests and
// decisions when each has a registry of its own: a test reading one server's /metrics sees what
// that server answered and decided, not its neighbours'.
func TestMetricsOfAServerWithItsOwnRegistryCountOnlyItsRequests(t *testing.T) {
	own := func(o *Options) { o.Log = logr.Discard(); o.Metrics = prometheus.NewRegistry() }
	called, idle := startTLSServer(t, own), startTLSServer(t, own)
	body := reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil)
	for range 3 {
		resp, _ := called.review(t, body)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	requests := `controller_runtime_webhook_requests_total{code="200",webhook="` + TaskResultPath + `"}`
	assert.Equal(t, 3.0, scrapeSeries(t, called.probes+"/metrics", requests), "the server called")
	assert.Equal(t, 0.0, scrapeSeries(t, idle.probes+"/metrics", requests), "the other server")
	assert.Equal(t, 3.0, scrapeSeries(t, called.probes+"/metrics", `controller_runtime_webhook_latency_seconds_count{webhook="`+TaskResultPath+`"}`))

	a1 := `argo_completion_webhook_decisions_total{kind="taskresult",mode="enforce",rule="A1"}`
	assert.Equal(t, 3.0, scrapeSeries(t, called.probes+"/metrics", a1), "the server called decided each request")
	_, exposed := seriesValue(t, idle.probes+"/metrics", a1)
	assert.False(t, exposed, "the other server decided nothing")
	assert.Zero(t, scrapeSeries(t, idle.probes+"/metrics", "argo_completion_webhook_bad_requests_total"), "its own counters are served, at zero")
}

// scrapeSeries returns the value of one series (name{labels} as exposed) at a /metrics URL; it
// fails the test when the series is not exposed.
func scrapeSeries(t *testing.T, url, series string) float64 {
	t.Helper()
	v, ok := seriesValue(t, url, series)
	require.Truef(t, ok, "series not exposed: %s at %s", series, url)
	return v
}

// seriesValue returns the value of one series (name{labels} as exposed) at a /metrics URL, and
// whether it is exposed.
func seriesValue(t *testing.T, url, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range bytes.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(string(line)), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f, true
		}
	}
	return 0, false
}
