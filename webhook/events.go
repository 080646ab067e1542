package webhook

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// WorkflowRef names the Workflow an Event is about.
type WorkflowRef struct {
	Namespace, Name string
	// UID is the Workflow's UID when known ("" otherwise: the Event still names it).
	UID string
}

// Recorder tells operators, on the Workflow, what a rule did or, in audit mode, would do, so
// `kubectl describe workflow` and the Argo UI show why a workflow completed.
type Recorder interface {
	// Record reports decision d (which mutates) about wf; audit says it was not applied. It
	// returns whether the Event was queued to be sent (false: dropped over a rate limit), for
	// argo_completion_webhook_events_total, which the handler counts.
	Record(wf WorkflowRef, d rules.Decision, audit bool, nodeID string) bool
}

// Event rate: a token bucket in front of the broadcaster's queue, so a flood of mutations (every
// #12985 task result in a large fan-out) costs one atomic check each and never fills the queue.
const (
	eventQPS   = 10
	eventBurst = 100
)

// EventRecorder records Kubernetes Events with client-go's broadcaster. Recording never blocks:
// past a token bucket (10/s, burst 100; Record drops the rest and says so), events go to a bounded
// queue (1,000) and are sent from another goroutine; client-go's correlator aggregates repeats
// and rate-limits each workflow (a burst of 25, then one every 5 minutes).
type EventRecorder struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	limit       flowcontrol.RateLimiter
}

var _ Recorder = (*EventRecorder)(nil)

// NewEventRecorder starts a broadcaster that writes Events through cfg as component.
func NewEventRecorder(cfg *rest.Config, component string) (*EventRecorder, error) {
	client, err := typedcorev1.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the events client: %w", err)
	}
	return newEventRecorder(&typedcorev1.EventSinkImpl{Interface: client.Events("")}, component), nil
}

// newEventRecorder starts a broadcaster writing to sink.
func newEventRecorder(sink record.EventSink, component string) *EventRecorder {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(sink)
	return &EventRecorder{broadcaster: b, recorder: b.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: component}),
		limit: flowcontrol.NewTokenBucketRateLimiter(eventQPS, eventBurst)}
}

// Record implements Recorder.
func (e *EventRecorder) Record(wf WorkflowRef, d rules.Decision, audit bool, nodeID string) bool {
	if !e.limit.TryAccept() {
		return false
	}
	ref := &corev1.ObjectReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Namespace: wf.Namespace, Name: wf.Name, UID: types.UID(wf.UID)}
	e.recorder.Event(ref, corev1.EventTypeNormal, rules.EventReason(d, audit), rules.EventMessage(d, audit, nodeID))
	return true
}

// Shutdown stops the broadcaster; events still queued may be dropped.
func (e *EventRecorder) Shutdown() {
	e.broadcaster.Shutdown()
}
