package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// Hostile and odd input that is well-formed JSON: each row is allowed, with the exact patch (or
// none) stated. Malformed input is in TestHandlerRejectsMalformedReviews and
// TestTruncatedReviewsAreRejectedAtEveryByte.
func TestHandlerAllowsHostileInput(t *testing.T) {
	tr := func(labels any, extra string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"argoproj.io","version":"v1alpha1","kind":"WorkflowTaskResult"},"namespace":"argo","operation":"CREATE",` +
			`"object":{"metadata":{"name":"wf-3571860313","labels":` + fmt.Sprint(labels) + `}` + extra + `}}}`)
	}
	const okLabels = `{"workflows.argoproj.io/workflow":"wf","workflows.argoproj.io/report-outputs-completed":"false"}`
	const outputs = `,"outputs":{"parameters":[]}`
	huge := &strings.Builder{}
	huge.WriteString(`{"workflows.argoproj.io/workflow":"wf"`)
	for i := range 20000 {
		fmt.Fprintf(huge, `,"example.com/k%d":"v"`, i)
	}
	huge.WriteString(`}`)
	replace := `[{"op":"replace","path":"/metadata/labels/workflows.argoproj.io~1report-outputs-completed","value":"true"}]`
	add := `[{"op":"add","path":"/metadata/labels/workflows.argoproj.io~1report-outputs-completed","value":"true"}]`
	cases := map[string]struct {
		body  []byte
		patch string // "" for none
	}{
		"the #12985 create (reference row)":       {tr(okLabels, outputs), replace},
		"outputs: null is no outputs":             {tr(okLabels, `,"outputs":null`), ""},
		"labels: null":                            {tr("null", outputs), ""},
		"20,000 labels":                           {tr(huge.String(), outputs), add},
		"duplicate label keys: the last one wins": {tr(`{"workflows.argoproj.io/workflow":"wf","workflows.argoproj.io/report-outputs-completed":"false","workflows.argoproj.io/report-outputs-completed":"true"}`, outputs), ""},
		"an object of another resource":           {bytes.Replace(tr(okLabels, outputs), []byte(`"kind":"WorkflowTaskResult"`), []byte(`"kind":"ConfigMap"`), 1), ""},
		"unknown fields everywhere":               {bytes.Replace(tr(okLabels, outputs+`,"x":{"y":[1,2.5e3,true,null,"\"]"]}`), []byte(`"uid":"u"`), []byte(`"uid":"u","z":[{}]`), 1), replace},
		"escaped characters in a label value":     {tr(`{"workflows.argoproj.io/workflow":"wf","workflows.argoproj.io/report-outputs-completed":"f\u0061lse"}`, outputs), replace},
		"operation other than CREATE/UPDATE":      {bytes.Replace(tr(okLabels, outputs), []byte(`"CREATE"`), []byte(`"CONNECT"`), 1), ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := NewTaskResultHandler(HandlerOptions{Pods: resourcePods(), Log: logr.Discard()})
			code, resp := serveReview(t, h, tc.body)
			assert.Equal(t, http.StatusOK, code)
			assert.Equal(t, "u", string(resp.UID))
			if tc.patch == "" {
				assert.Nil(t, resp.Patch)
			} else {
				assert.JSONEq(t, tc.patch, string(resp.Patch))
			}
		})
	}
}

// blockingPods never answers until its context ends: a hung API server or an unsynced cache.
type blockingPods struct{}

func (blockingPods) PodForNode(ctx context.Context, _, _, _ string) (*rules.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestSlowPodLookupIsAllowedUnpatchedWithinTheDeadline(t *testing.T) {
	counters := ownCounters(t)
	h := NewTaskResultHandler(HandlerOptions{Pods: blockingPods{}, LookupTimeout: 300 * time.Millisecond, Log: logr.Discard(), Counters: counters})
	start := time.Now()
	_, resp := serveReview(t, h, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	took := time.Since(start)
	assert.Nil(t, resp.Patch)
	assert.Less(t, took, time.Second, "answered within the lookup deadline, well under timeoutSeconds (2s)")
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Equal(t, 1.0, testutil.ToFloat64(counters.lookupErrors))
}

// Clients that never finish their headers (Slowloris) hold connections; the server keeps
// answering others meanwhile (controller-runtime's server drops them after its 32 s
// ReadHeaderTimeout; the probe/metrics server after 10 s).
func TestServerSurvivesSlowHeaderClients(t *testing.T) {
	s := startTLSServer(t, nil)
	conns := make([]net.Conn, 0, 20)
	for range 20 {
		c, err := tls.Dial("tcp", s.address, &tls.Config{RootCAs: s.caPool})
		require.NoError(t, err)
		_, err = c.Write([]byte("POST " + TaskResultPath + " HTTP/1.1\r\nHost: x\r\n")) // never finishes the headers
		require.NoError(t, err)
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	resp, out := s.review(t, reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
		taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotNil(t, out.Patch, "served while 20 slow clients hold connections")
}
