package rules

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

var (
	stuckNow   = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	stuckGrace = RepairGrace{Pod: 2 * time.Minute, Orphan: 10 * time.Minute}
)

// before is a time that long before stuckNow.
func before(d time.Duration) time.Time { return stuckNow.Add(-d) }

// stuckInput is everything rule A3 reads.
type stuckInput struct {
	tr   StuckTaskResult
	wf   StuckWorkflow
	pods NodePods
}

// stuck builds the v3.5.5+ stuck shape, safe to repair: a task result "false" created an hour
// ago by the resource pod of node wf-1, whose main terminated 5 minutes ago; the node is still
// Running, the workflow exists with the owner's UID and is not completed.
func stuck(mods ...func(*stuckInput)) stuckInput {
	in := stuckInput{
		tr: StuckTaskResult{
			Name:             "wf-1",
			Labels:           map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueFalse},
			Created:          before(time.Hour),
			OwnerWorkflowUID: "uid-1",
		},
		wf: StuckWorkflow{Exists: true, UID: "uid-1", Node: &StuckNode{Type: nodeTypePod, Phase: "Running"}},
		pods: NodePods{Count: 1, UID: "pod-uid-1", Pod: &Pod{
			Name: "wf-main-1", WorkflowUID: "uid-1", Created: before(61 * time.Minute), Phase: "Running",
			Containers: []Container{{Name: "main", Terminated: true, TerminatedAt: before(5 * time.Minute)}},
		}},
	}
	for _, m := range mods {
		m(&in)
	}
	return in
}

// withContainers replaces the pod's containers.
func withContainers(cs ...Container) func(*stuckInput) {
	return func(in *stuckInput) { in.pods.Pod.Containers = cs }
}

// podGone removes the node's pod and sets the node's finishedAt that long ago (0: unset).
func podGone(finished time.Duration) func(*stuckInput) {
	return func(in *stuckInput) {
		in.pods = NodePods{}
		in.wf.Node.Phase = phaseError
		if finished > 0 {
			in.wf.Node.FinishedAt = before(finished)
		}
	}
}

// ownedByPod makes the result as executors v3.3.2–v3.5.1 left it (R1): owned by the node's pod
// (UID pod-uid-1), without a Workflow owner reference.
func ownedByPod(in *stuckInput) {
	in.tr.OwnerWorkflowUID, in.tr.OwnerPodUID = "", "pod-uid-1"
}

// newAttempt makes the pod a retry's attempt: created after the task result, 10 seconds ago.
func newAttempt(in *stuckInput) {
	in.pods.Pod.Created = before(10 * time.Second)
}

func runningContainer(name string) Container { return Container{Name: name} }

func terminatedContainer(name string, d time.Duration) Container {
	return Container{Name: name, Terminated: true, TerminatedAt: before(d)}
}

func TestDecideStuckTaskResult(t *testing.T) {
	cases := map[string]struct {
		in     stuckInput
		repair bool
		why    string // a fragment of the reason, naming the condition that decided
	}{
		// Branch (a): the node's one pod, every executor container terminated past the grace.
		"repairs a resource pod whose main terminated past the pod grace": {
			in: stuck(), repair: true, why: "every executor container of pod wf-main-1 terminated 5m0s ago",
		},
		"repairs a wait-container pod whose wait and main terminated past the grace, counted from the later": {
			in: stuck(withContainers(terminatedContainer("wait", 3*time.Minute), terminatedContainer("main", 4*time.Minute))), repair: true, why: "terminated 3m0s ago",
		},
		"repairs a supervisor pod whose supervisor and main terminated past the grace": {
			in: stuck(withContainers(terminatedContainer("supervisor", 3*time.Minute), terminatedContainer("main", 4*time.Minute))), repair: true, why: "terminated 3m0s ago",
		},
		"repairs a resource pod with archiveLogs (wait and main both argoexec) once both terminated": {
			in: stuck(withContainers(terminatedContainer("wait", 5*time.Minute), terminatedContainer("main", 3*time.Minute))), repair: true, why: "terminated 3m0s ago",
		},
		"repairs a pod whose user sidecar still runs: sidecars never write the result": {
			in: stuck(withContainers(terminatedContainer("wait", 3*time.Minute), terminatedContainer("main", 4*time.Minute), runningContainer("sidecar"))), repair: true, why: "terminated 3m0s ago",
		},
		"repairs when the label is absent": {
			in: stuck(func(in *stuckInput) { delete(in.tr.Labels, LabelReportOutputsCompleted) }), repair: true, why: "terminated",
		},
		"repairs a node already Succeeded": {
			in: stuck(func(in *stuckInput) { in.wf.Node.Phase = phaseSucceeded }), repair: true, why: "terminated",
		},
		"repairs a Failed pod whose executors all terminated": {
			in: stuck(func(in *stuckInput) { in.pods.Pod.Phase = podPhaseFailed }), repair: true, why: "terminated",
		},
		"repairs a pod newer than the result once its own executors terminated past the grace": {
			in:     stuck(newAttempt, withContainers(terminatedContainer("main", 3*time.Minute))),
			repair: true, why: "is newer than the result (a retry's attempt); every executor container",
		},
		"repairs a pod without a Workflow owner (the node ID still ties it to the node)": {
			in: stuck(func(in *stuckInput) { in.pods.Pod.WorkflowUID = "" }), repair: true, why: "terminated",
		},

		// Branch (b): no pod carries the node ID and the node finished past the orphan grace.
		"repairs when the pod is gone and the node finished past the orphan grace": {
			in: stuck(podGone(11 * time.Minute)), repair: true, why: "pod gone; node finished 11m0s ago",
		},

		// What the result itself says.
		"skips a result already true": {
			in: stuck(func(in *stuckInput) { in.tr.Labels[LabelReportOutputsCompleted] = valueTrue }), why: "already complete",
		},
		"skips a result without the workflow label": {
			in: stuck(func(in *stuckInput) { delete(in.tr.Labels, LabelWorkflow) }), why: "no " + LabelWorkflow,
		},
		"skips a result without any owner reference": {
			in: stuck(func(in *stuckInput) { in.tr.OwnerWorkflowUID = "" }), why: "no Workflow or Pod owner reference",
		},

		// A result owned by its Pod (executors v3.3.2–v3.5.1, R1): tied to the workflow through
		// its workflow label and its pod, which must be the one carrying the node ID.
		"repairs a result owned by the pod carrying the node ID, once its executors terminated": {
			in: stuck(ownedByPod), repair: true, why: "every executor container of pod wf-main-1 terminated 5m0s ago",
		},
		"repairs a result owned by both its Workflow and its pod": {
			in: stuck(func(in *stuckInput) { in.tr.OwnerPodUID = "pod-uid-1" }), repair: true, why: "terminated 5m0s ago",
		},
		"skips a result owned by a pod other than the one carrying the node ID (another attempt's)": {
			in: stuck(ownedByPod, func(in *stuckInput) { in.pods.UID = "pod-uid-2" }), why: "owned by pod UID pod-uid-1, but the pod carrying node ID wf-1 is wf-main-1 (UID pod-uid-2)",
		},
		"skips a result owned by a pod when no pod carries the node ID, however long ago the node finished": {
			in: stuck(ownedByPod, podGone(time.Hour)), why: "owned by pod UID pod-uid-1, and no pod carries node ID wf-1",
		},
		"skips a result owned by a pod that is owned by another workflow of the same name": {
			in: stuck(ownedByPod, func(in *stuckInput) { in.pods.Pod.WorkflowUID = "uid-0" }), why: `owner pod wf-main-1 is owned by workflow UID "uid-0", not by workflow wf (UID uid-1)`,
		},
		"skips a result owned by a pod that has no Workflow owner": {
			in: stuck(ownedByPod, func(in *stuckInput) { in.pods.Pod.WorkflowUID = "" }), why: `owned by workflow UID ""`,
		},
		"skips a result owned by a pod when two pods carry the node ID": {
			in: stuck(ownedByPod, func(in *stuckInput) { in.pods = NodePods{Count: 2} }), why: "2 pods carry node ID wf-1",
		},
		"skips a result owned by its pod whose executors have not terminated": {
			in: stuck(ownedByPod, withContainers(runningContainer("main"))), why: "executor container main of pod wf-main-1 has not terminated",
		},
		"skips a result owned by a pod when the workflow is gone": {
			in: stuck(ownedByPod, func(in *stuckInput) { in.wf = StuckWorkflow{} }), why: "workflow wf not found",
		},

		// The owner Workflow.
		"skips when the workflow is gone": {
			in: stuck(func(in *stuckInput) { in.wf = StuckWorkflow{} }), why: "workflow wf not found",
		},
		"skips a result owned by an earlier workflow of the same name": {
			in: stuck(func(in *stuckInput) { in.wf.UID = "uid-2"; in.pods.Pod.WorkflowUID = "uid-2" }), why: "owned by an earlier workflow",
		},
		"skips when the workflow is labelled completed": {
			in: stuck(func(in *stuckInput) { in.wf.Completed = true }), why: "already completed",
		},
		"skips when the workflow is being deleted": {
			in: stuck(func(in *stuckInput) { in.wf.Deleting = true }), why: "being deleted",
		},
		"skips when the workflow's nodes are offloaded": {
			in: stuck(func(in *stuckInput) { in.wf.NodesUnreadable = "offloaded"; in.wf.Node = nil }), why: "nodes unreadable (offloaded)",
		},

		// The node: a retry removes it and re-creates it Pending with the same ID.
		"skips when the workflow has no such node, however old the result (a retry removed it)": {
			in: stuck(func(in *stuckInput) { in.wf.Node = nil; in.pods = NodePods{} }), why: "has no node wf-1",
		},
		"skips a node that is not a Pod node": {
			in: stuck(func(in *stuckInput) { in.wf.Node.Type = "Retry" }), why: `type "Retry"`,
		},
		"skips a Pending node (a retry's new attempt) even with an old terminated pod": {
			in: stuck(func(in *stuckInput) { in.wf.Node.Phase = nodePending; in.wf.Node.StartedAt = before(time.Minute) }), why: "is Pending",
		},
		"skips a Pending node without a startedAt": {
			in: stuck(func(in *stuckInput) { in.wf.Node.Phase = nodePending }), why: "is Pending",
		},
		"skips a Pending node with no pod": {
			in: stuck(podGone(time.Hour), func(in *stuckInput) { in.wf.Node.Phase = nodePending; in.wf.Node.StartedAt = before(2 * time.Hour) }), why: "is Pending",
		},
		"repairs a Pending node whose own pod ran and ended past the grace (held Pending by the gate)": {
			in:     stuck(func(in *stuckInput) { in.wf.Node.Phase = nodePending; in.wf.Node.StartedAt = before(62 * time.Minute) }),
			repair: true, why: "terminated 5m0s ago",
		},
		"skips a node without a phase": {
			in: stuck(func(in *stuckInput) { in.wf.Node.Phase = "" }), why: "has no phase",
		},

		// The pods carrying the node ID.
		"skips when two pods carry the node ID": {
			in: stuck(func(in *stuckInput) { in.pods.Count = 2 }), why: "2 pods carry node ID wf-1",
		},
		"skips when one pod carries the node ID but its facts are missing": {
			in: stuck(func(in *stuckInput) { in.pods.Pod = nil }), why: "facts of the pod",
		},
		"skips a pod owned by another workflow of the same name": {
			in: stuck(func(in *stuckInput) { in.pods.Pod.WorkflowUID = "uid-0" }), why: "belongs to another workflow",
		},
		"skips a pod without an executor container": {
			in: stuck(withContainers(terminatedContainer("sidecar", time.Hour))), why: "no executor container",
		},

		// Branch (a) not met.
		"skips a resource pod still running": {
			in: stuck(withContainers(runningContainer("main"))), why: "executor container main of pod wf-main-1 has not terminated",
		},
		"skips a wait-container pod whose wait still runs": {
			in: stuck(withContainers(runningContainer("wait"), terminatedContainer("main", time.Hour))), why: "executor container wait",
		},
		"skips a wait-container pod whose main still runs though wait terminated (A3 waits on main too)": {
			in: stuck(withContainers(terminatedContainer("wait", time.Hour), runningContainer("main"))), why: "executor container main of pod wf-main-1 has not terminated",
		},
		"skips a resource pod with archiveLogs whose main terminated within the grace, wait long ago": {
			in: stuck(withContainers(terminatedContainer("wait", time.Hour), terminatedContainer("main", time.Minute))), why: "terminated 1m0s ago, under the 2m0s grace",
		},
		"skips a supervisor pod whose main still runs": {
			in: stuck(withContainers(terminatedContainer("supervisor", time.Hour), runningContainer("main"))), why: "executor container main",
		},
		"skips executors terminated within the pod grace": {
			in: stuck(withContainers(terminatedContainer("main", time.Minute))), why: "under the 2m0s grace",
		},
		"skips a terminated container without a termination time": {
			in: stuck(withContainers(Container{Name: "main", Terminated: true})), why: "no termination time",
		},
		"skips a pod newer than the result whose executors have not started, however old the result and the node's finishedAt": {
			in:  stuck(newAttempt, withContainers(runningContainer("main")), func(in *stuckInput) { in.wf.Node.FinishedAt = before(time.Hour) }),
			why: "is newer than the result (a retry's attempt); executor container main",
		},
		"skips a pod newer than the result whose executors terminated within the grace": {
			in: stuck(newAttempt, withContainers(terminatedContainer("main", 5*time.Second))), why: "under the 2m0s grace",
		},
		"skips a Failed pod whose wait container has not terminated (R7)": {
			in:  stuck(withContainers(runningContainer("wait"), terminatedContainer("main", time.Hour)), func(in *stuckInput) { in.pods.Pod.Phase = podPhaseFailed }),
			why: "is Failed but executor container wait has not terminated",
		},
		"skips an Unknown pod whose main has not terminated (R7)": {
			in:  stuck(withContainers(runningContainer("main")), func(in *stuckInput) { in.pods.Pod.Phase = podPhaseUnknown }),
			why: "is Unknown but executor container main has not terminated",
		},

		// Branch (b) not met.
		"skips a pod gone with the node finished within the orphan grace": {
			in: stuck(podGone(time.Minute)), why: "under the 10m0s grace",
		},
		"skips a pod gone with the node not finished, however old the result": {
			in: stuck(podGone(0), func(in *stuckInput) { in.tr.Created = before(24 * time.Hour) }), why: "the node has not finished",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := DecideStuckTaskResult(tc.in.tr, tc.in.wf, tc.in.pods, stuckNow, stuckGrace)
			assert.Contains(t, d.Reason, tc.why)
			if tc.repair {
				assert.Equal(t, map[string]string{LabelReportOutputsCompleted: valueTrue}, d.Set)
				assert.Equal(t, "A3", d.Rule)
			} else {
				assert.False(t, d.Mutates(), d.Reason)
				assert.Empty(t, d.Rule)
			}
		})
	}
}

func TestDecideStuckTaskResultIsIdempotent(t *testing.T) {
	for name, in := range map[string]stuckInput{
		"branch (a): every executor terminated": stuck(),
		"branch (b): pod gone, node finished":   stuck(podGone(time.Hour)),
		"result owned by its pod":               stuck(ownedByPod),
	} {
		t.Run(name, func(t *testing.T) {
			first := DecideStuckTaskResult(in.tr, in.wf, in.pods, stuckNow, stuckGrace)
			assert.True(t, first.Mutates())
			applied := in.tr
			applied.Labels = map[string]string{}
			for k, v := range in.tr.Labels {
				applied.Labels[k] = v
			}
			for k, v := range first.Set {
				applied.Labels[k] = v
			}
			second := DecideStuckTaskResult(applied, in.wf, in.pods, stuckNow, stuckGrace)
			assert.False(t, second.Mutates(), "running the rule on its own output decides nothing")
		})
	}
}

func TestDecideStuckTaskResultSaysHowLongTheGraceHoldsIt(t *testing.T) {
	for name, tc := range map[string]struct {
		in   stuckInput
		wait time.Duration
	}{
		"the pod grace, from the last executor's termination": {in: stuck(withContainers(terminatedContainer("main", 30*time.Second))), wait: 90 * time.Second},
		"the orphan grace, from the node's finishedAt":        {in: stuck(podGone(4 * time.Minute)), wait: 6 * time.Minute},
		"nothing once the grace has passed":                   {in: stuck()},
		"nothing when something else holds it":                {in: stuck(withContainers(runningContainer("main")))},
		"nothing when the node has not finished":              {in: stuck(podGone(0))},
	} {
		t.Run(name, func(t *testing.T) {
			d := DecideStuckTaskResult(tc.in.tr, tc.in.wf, tc.in.pods, stuckNow, stuckGrace)
			assert.Equal(t, tc.wait, d.Wait, d.Reason)
		})
	}
}
