package webhook

import (
	"net/http"
	"sync"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// eventLog is a Recorder that keeps what it is given, or, when drop is set, drops it as
// EventRecorder does over its rate limit.
type eventLog struct {
	drop   bool
	mu     sync.Mutex
	events []string
}

func (e *eventLog) Record(wf WorkflowRef, d rules.Decision, audit bool, nodeID string) bool {
	if e.drop {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, wf.Namespace+"/"+wf.Name+"/"+wf.UID+" "+rules.EventReason(d, audit)+": "+rules.EventMessage(d, audit, nodeID))
	return true
}

func (e *eventLog) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.events...)
}

func TestHandlersRecordAnEventOnTheWorkflowForEachMutation(t *testing.T) {
	trBody := func(mods ...func(map[string]any)) []byte {
		return reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
			taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "false"}), nil, mods...)
	}
	cases := map[string]struct {
		workflow bool
		mode     Mode
		drop     bool // the recorder is over its rate limit
		body     []byte
		want     []string
	}{
		"A1 records TaskResultCompleted on the owner workflow": {
			body: trBody(),
			want: []string{"argo/wf/uid-1 TaskResultCompleted: argo-completion-webhook rule A1 set workflows.argoproj.io/report-outputs-completed=true on task result wf-3571860313: outputs written by a resource or data pod, which never finalizes (argo-workflows#12985)"},
		},
		"audit mode records what it would do": {
			body: trBody(), mode: ModeAudit,
			want: []string{"argo/wf/uid-1 WouldTaskResultCompleted: argo-completion-webhook rule A1 would set (audit mode) workflows.argoproj.io/report-outputs-completed=true on task result wf-3571860313: outputs written by a resource or data pod, which never finalizes (argo-workflows#12985)"},
		},
		"a dry-run request records nothing (sideEffects: NoneOnDryRun)": {
			body: trBody(func(r map[string]any) { r["dryRun"] = true }),
		},
		"B2 records WorkflowCompleted": {
			workflow: true, body: reviewJSON(t, "Workflow", rules.OperationUpdate, stuckWorkflowObject(nil), stuckWorkflowObject(nil)),
			want: []string{"argo/wf/ WorkflowCompleted: argo-completion-webhook rule B2 set workflows.argoproj.io/completed=true on the workflow (task results wf-3571860313 marked complete): phase Succeeded held incomplete only by 1 finished task result(s) whose outputs the nodes carry"},
		},
		"an Event over the rate limit is dropped and counted as dropped": {
			body: trBody(), drop: true,
		},
		"no mutation, no event": {
			body: reviewJSON(t, "WorkflowTaskResult", rules.OperationCreate,
				taskResultObject12985(map[string]any{rules.LabelWorkflow: "wf", rules.LabelReportOutputsCompleted: "true"}), nil),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			events, counters := &eventLog{drop: tc.drop}, ownCounters(t)
			opts := HandlerOptions{Pods: resourcePods(), TaskResults: storedTaskResult12985(), Mode: tc.mode, Events: events, Log: testr.New(t), Counters: counters}
			h := NewTaskResultHandler(opts)
			if tc.workflow {
				opts.Pods = &podTable{}
				h = NewWorkflowHandler(opts)
			}
			code, _ := serveReview(t, h, tc.body)
			require.Equal(t, http.StatusOK, code)
			assert.Equal(t, tc.want, events.all())
			dropped := 0.0
			if tc.drop {
				dropped = 1
			}
			assert.Equal(t, float64(len(tc.want)), testutil.ToFloat64(counters.events.WithLabelValues("queued")), "queued")
			assert.Equal(t, dropped, testutil.ToFloat64(counters.events.WithLabelValues("dropped")), "dropped")
		})
	}
}
