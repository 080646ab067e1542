package rules

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// family builds the facts of a stuck workflow wf (namespace argo, UID uid-1), Running, with one
// Pod node wf-1 held Running: its resource pod wf-1-pod (main only, exit 0, Succeeded) ended 5
// minutes ago, its task result is "false" with outputs, owned by the workflow, and the executor's
// account (default) may create and patch task results. That is #12985 on a v3.5.5+ controller.
func family(mods ...func(*FamilyFacts)) FamilyFacts {
	f := FamilyFacts{
		Workflow: FamilyWorkflow{Namespace: "argo", Name: "wf", UID: "uid-1", Phase: nodeRunning,
			Nodes: map[string]Node{"wf-1": {Type: nodeTypePod, Phase: nodeRunning, StartedAt: rfc(before(62 * time.Minute))}}},
		TaskResults: map[string]*FamilyTaskResult{"wf-1": {HasOutputs: true, StuckTaskResult: StuckTaskResult{
			Name: "wf-1", Labels: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueFalse},
			Created: before(time.Hour), OwnerWorkflowUID: "uid-1"}}},
		Pods: map[string][]*FamilyPod{"wf-1": {{UID: "pod-uid-1", Exits: map[string]ContainerExit{"main": {Reason: "Completed"}},
			Pod: &Pod{Name: "wf-1-pod", WorkflowUID: "uid-1", Created: before(61 * time.Minute), Phase: phaseSucceeded,
				Containers: []Container{terminatedContainer("main", 5*time.Minute)}}}}},
		Rights: map[string]ExecutorRights{defaultSA: {Create: true, Patch: true}},
	}
	for _, m := range mods {
		m(&f)
	}
	return f
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// node changes node wf-1.
func node(change func(*Node)) func(*FamilyFacts) {
	return func(f *FamilyFacts) {
		n := f.Workflow.Nodes["wf-1"]
		change(&n)
		f.Workflow.Nodes["wf-1"] = n
	}
}

// pod changes the pod of node wf-1.
func pod(change func(*FamilyPod)) func(*FamilyFacts) {
	return func(f *FamilyFacts) { change(f.Pods["wf-1"][0]) }
}

// waitExit gives the pod a wait container that exited with code and reason a minute after main,
// 3 minutes ago.
func waitExit(code int32, reason string) func(*FamilyFacts) {
	return pod(func(p *FamilyPod) {
		p.Containers = []Container{terminatedContainer("wait", 3*time.Minute), terminatedContainer("main", 4*time.Minute)}
		p.Exits = map[string]ContainerExit{"wait": {Code: code, Reason: reason}, "main": {Reason: "Completed"}}
		if code != 0 {
			p.Phase = podPhaseFailed
		}
	})
}

// mainExit makes the resource pod's main exit with code (and the pod Failed when not 0).
func mainExit(code int32) func(*FamilyFacts) {
	return pod(func(p *FamilyPod) {
		p.Exits["main"] = ContainerExit{Code: code, Reason: "Error"}
		p.Phase = podPhaseFailed
	})
}

// gone removes the node's pod; the controller marked the node Error "pod deleted" that long ago.
func gone(finished time.Duration) func(*FamilyFacts) {
	return func(f *FamilyFacts) {
		delete(f.Pods, "wf-1")
		node(func(n *Node) { n.Phase, n.FinishedAt = phaseError, rfc(before(finished)) })(f)
	}
}

// label sets the task result's completion label; "" removes it.
func label(v string) func(*FamilyFacts) {
	return func(f *FamilyFacts) {
		if v == "" {
			delete(f.TaskResults["wf-1"].Labels, LabelReportOutputsCompleted)
			return
		}
		f.TaskResults["wf-1"].Labels[LabelReportOutputsCompleted] = v
	}
}

func noResult(f *FamilyFacts) { delete(f.TaskResults, "wf-1") }

func noOutputs(f *FamilyFacts) { f.TaskResults["wf-1"].HasOutputs = false }

// entry sets the completion map's entry for id.
func entry(id string, done bool) func(*FamilyFacts) {
	return func(f *FamilyFacts) {
		if f.Workflow.TaskResultsCompletion == nil {
			f.Workflow.TaskResultsCompletion = map[string]bool{}
		}
		f.Workflow.TaskResultsCompletion[id] = done
	}
}

func synced(v bool) func(*FamilyFacts) { return node(func(n *Node) { n.TaskResultSynced = &v }) }

func rights(create, patch bool) func(*FamilyFacts) {
	return func(f *FamilyFacts) { f.Rights = map[string]ExecutorRights{defaultSA: {Create: create, Patch: patch}} }
}

// settled makes node wf-1 Succeeded (nothing holds it).
func settled(f *FamilyFacts) {
	node(func(n *Node) { n.Phase, n.FinishedAt = phaseSucceeded, rfc(before(5*time.Minute)) })(f)
}

func TestDiagnoseWorkflow(t *testing.T) {
	cases := map[string]struct {
		in      FamilyFacts
		node    string // the finding's node; "" for the workflow's own row (R11)
		cause   string // "" when nothing is found
		verdict Verdict
		action  string
		next    string // a fragment of the next step
		why     string // a fragment of the reason (or of Diagnosis.Reason when nothing is found)
	}{
		// #12985: argoexec v3.5.2–v3.5.4 resource/data pods never finalize.
		"flips a resource pod's false result with outputs (#12985, v3.5.5+ Running shape)": {
			in: family(), node: "wf-1", cause: Cause12985, verdict: VerdictRepair, action: ActionFlip,
			next: "repair --apply sets the label", why: "never finalize it",
		},
		"flips #12985 in the v3.5.3–v3.5.5 shape (Succeeded, completed=false)": {
			in: family(func(f *FamilyFacts) { f.Workflow.Phase = phaseSucceeded }, settled), node: "wf-1", cause: Cause12985,
			verdict: VerdictRepair, action: ActionFlip, why: "every executor container of pod wf-1-pod terminated 5m0s ago",
		},
		"waits out the pod grace on a resource pod that ended a minute ago (#12985)": {
			in:   family(pod(func(p *FamilyPod) { p.Containers = []Container{terminatedContainer("main", time.Minute)} })),
			node: "wf-1", cause: Cause12985, verdict: VerdictWait, action: ActionFlip, next: "will repair after 1m0s",
		},

		// R1: executors ≤ v3.5.1 write no label.
		"flips a result without the label (R1)": {
			in: family(label("")), node: "wf-1", cause: CauseR1, verdict: VerdictRepair, action: ActionFlip, why: "executor ≤ v3.5.1",
		},
		"flips a result without the label owned by its pod (R1)": {
			in: family(label(""), func(f *FamilyFacts) {
				f.TaskResults["wf-1"].OwnerWorkflowUID, f.TaskResults["wf-1"].OwnerPodUID = "", "pod-uid-1"
			}), node: "wf-1", cause: CauseR1, verdict: VerdictRepair, action: ActionFlip, why: "owned by its Pod",
		},
		"leaves a pod-owned result without the label alone once its pod is gone (R1)": {
			in: family(label(""), gone(time.Hour), func(f *FamilyFacts) {
				f.TaskResults["wf-1"].OwnerWorkflowUID, f.TaskResults["wf-1"].OwnerPodUID = "", "pod-uid-1"
			}), node: "wf-1", cause: CauseR1, verdict: VerdictSkip, next: "the garbage collector deletes it with its pod, then repair creates it",
			why: "the garbage collector deletes the result with its pod",
		},

		// R2: the executor's account may not write task results.
		"asks to fix RBAC when the executor's account may not patch a false result (R2)": {
			in: family(rights(true, false)), node: "wf-1", cause: CauseR2, verdict: VerdictManual,
			next: "fix RBAC for argo/default, then run repair", why: "may not patch workflowtaskresults in namespace argo",
		},
		"asks to fix RBAC when the executor's account may not create the missing result (R2)": {
			in: family(noResult, entry("wf-1", false), rights(false, false)), node: "wf-1", cause: CauseR2, verdict: VerdictManual,
			next: "fix RBAC for argo/default, then run repair", why: "may not create or patch",
		},
		"names the pod's own service account in the RBAC step (R2)": {
			in: family(rights(false, true), pod(func(p *FamilyPod) { p.ServiceAccount = "runner" }), func(f *FamilyFacts) {
				f.Rights = map[string]ExecutorRights{"runner": {Patch: true}}
			}), node: "wf-1", cause: CauseR2, verdict: VerdictManual, next: "fix RBAC for argo/runner",
		},
		"creates the missing result once RBAC is fixed, when the pod shows v3.5's RBAC fallback (R2)": {
			in:   family(noResult, entry("wf-1", false), pod(func(p *FamilyPod) { p.Fallback = true })),
			node: "wf-1", cause: CauseR2, verdict: VerdictRepair, action: ActionCreate, next: "repair --apply creates the task result", why: "RBAC-fallback annotations",
		},
		"asks to upgrade when v3.5.5 keyed the fallback entry by pod name (R2a)": {
			in:   family(noResult, entry("wf-1-pod", false)),
			node: "wf-1", cause: CauseR2, verdict: VerdictManual, next: "upgrade the controller to ≥3.5.6", why: "argo-workflows#12733",
		},

		// R3: the wait container died before FinalizeOutput.
		"flips a result whose wait container was killed (R3)": {
			in: family(waitExit(137, "Error")), node: "wf-1", cause: CauseR3, verdict: VerdictRepair, action: ActionFlip, why: "wait container exited 137 (Error)",
		},
		"flips a result whose wait container was OOMKilled (R3)": {
			in: family(waitExit(137, reasonOOM)), node: "wf-1", cause: CauseR3, verdict: VerdictRepair, action: ActionFlip, why: "(OOMKilled)",
		},
		"flips a result whose supervisor crashed (R3, v4.1)": {
			in: family(pod(func(p *FamilyPod) {
				p.Containers = []Container{terminatedContainer("supervisor", 3*time.Minute), terminatedContainer("main", 4*time.Minute)}
				p.Exits = map[string]ContainerExit{"supervisor": {Code: 2, Reason: "Error"}, "main": {}}
				p.Phase = podPhaseFailed
			})), node: "wf-1", cause: CauseR3, verdict: VerdictRepair, action: ActionFlip, why: "supervisor container exited 2",
		},

		// R4: the pod went while the result was "false".
		"flips a result whose pod is gone once the node finished past the orphan grace (R4)": {
			in: family(gone(11 * time.Minute)), node: "wf-1", cause: CauseR4, verdict: VerdictRepair, action: ActionFlip, why: "pod gone; node finished 11m0s ago",
		},
		"waits out the orphan grace when the pod went recently (R4)": {
			in: family(gone(time.Minute)), node: "wf-1", cause: CauseR4, verdict: VerdictWait, action: ActionFlip, next: "will repair after 9m0s",
		},

		// R5: the executor exited 0 but gave up FinalizeOutput.
		"flips a result whose wait exited 0 without finalizing (R5)": {
			in: family(waitExit(0, "Completed")), node: "wf-1", cause: CauseR5, verdict: VerdictRepair, action: ActionFlip, why: "FinalizeOutput gave up",
		},
		"flips a resource pod's result without outputs after main exited 0 (R5)": {
			in: family(noOutputs), node: "wf-1", cause: CauseR5, verdict: VerdictRepair, action: ActionFlip, why: "without outputs",
		},

		// R6: a resource/data main died before its deferred FinalizeOutput.
		"flips a failed resource pod's result (R6)": {
			in: family(mainExit(1), noOutputs), node: "wf-1", cause: CauseR6, verdict: VerdictRepair, action: ActionFlip, why: "main exited 1",
		},

		// R7: the node is lost; its executor may still write.
		"asks to delete a Failed pod whose wait never terminated (R7)": {
			in: family(pod(func(p *FamilyPod) {
				p.Phase = podPhaseFailed
				p.Containers = []Container{runningContainer("wait"), terminatedContainer("main", time.Hour)}
			})), node: "wf-1", cause: CauseR7, verdict: VerdictManual, next: "delete pod wf-1-pod or upgrade to ≥3.6.16/3.7.7",
		},
		"asks to delete an Unknown resource pod whose main never terminated (R7)": {
			in: family(pod(func(p *FamilyPod) {
				p.Phase = podPhaseUnknown
				p.Containers = []Container{runningContainer("main")}
			})), node: "wf-1", cause: CauseR7, verdict: VerdictManual, next: "delete pod wf-1-pod",
		},
		"asks to delete a lost pod whose result is missing (R7 before R9)": {
			in: family(noResult, entry("wf-1", false), pod(func(p *FamilyPod) {
				p.Phase = podPhaseFailed
				p.Containers = []Container{runningContainer("wait"), terminatedContainer("main", time.Hour)}
			})), node: "wf-1", cause: CauseR7, verdict: VerdictManual, next: "delete pod wf-1-pod",
		},

		// R8: the result is "true" and the node is held anyway.
		"asks to upgrade when a complete result's node is held (R8)": {
			in: family(label(valueTrue), synced(true)), node: "wf-1", cause: CauseR8, verdict: VerdictManual, next: "upgrade to ≥3.7.2", why: "not a label problem",
		},

		// R9: the result is gone but something waits for it.
		"creates the missing result the completion map waits for, once the pod is gone past the orphan grace (R9)": {
			in: family(noResult, entry("wf-1", false), gone(11*time.Minute)), node: "wf-1", cause: CauseR9, verdict: VerdictRepair, action: ActionCreate,
			next: "repair --apply creates the task result", why: "completion map's entry for the node is false",
		},
		"creates the missing result taskResultSynced waits for (R9, v3.7.1+)": {
			in: family(noResult, synced(false)), node: "wf-1", cause: CauseR9, verdict: VerdictRepair, action: ActionCreate, why: "taskResultSynced is false",
		},
		"waits out the orphan grace before creating a missing result whose pod went recently (R9)": {
			in: family(noResult, entry("wf-1", false), gone(2*time.Minute)), node: "wf-1", cause: CauseR9, verdict: VerdictWait, action: ActionCreate, next: "will repair after 8m0s",
		},

		// R10: v3.5.5–v3.5.8 count a missing entry incomplete.
		"creates the result of a node held Running without result nor entry (R10)": {
			in: family(noResult), node: "wf-1", cause: CauseR10, verdict: VerdictRepair, action: ActionCreate, why: "argo-workflows#13332",
		},

		// R11: no task result holds the workflow.
		"reports a settled Running workflow that no task result holds (R11)": {
			in: family(label(valueTrue), settled), cause: CauseR11, verdict: VerdictManual, next: "not a task-result problem: see argo-workflows#15034",
		},
		"points a stopped workflow that no task result holds at #14709 (R11)": {
			in: family(label(valueTrue), settled, func(f *FamilyFacts) { f.Workflow.Shutdown = "Stop" }), cause: CauseR11, verdict: VerdictManual,
			next: "see argo-workflows#14709", why: "spec.shutdown is Stop",
		},
		"reports a Succeeded workflow with completed=false that no task result holds (R11)": {
			in: family(label(valueTrue), settled, func(f *FamilyFacts) { f.Workflow.Phase = phaseSucceeded }), cause: CauseR11, verdict: VerdictManual, why: "v3.5.3–v3.5.5",
		},
		"names daemoned nodes still holding the workflow (R11)": {
			in: family(label(valueTrue), settled, func(f *FamilyFacts) {
				f.Workflow.Nodes["wf-2"] = Node{Type: nodeTypePod, Phase: nodeRunning, Daemoned: true}
				f.Pods["wf-2"] = []*FamilyPod{{Pod: &Pod{Name: "wf-2-pod", Phase: podPhaseUnknown}}}
			}), cause: CauseR11, verdict: VerdictManual, why: "daemoned node(s) wf-2 still hold it",
		},
		"reports nothing while the pods finished within the pod grace (between two steps)": {
			in: family(label(valueTrue), settled, pod(func(p *FamilyPod) { p.Containers = []Container{terminatedContainer("main", time.Minute)} }),
				node(func(n *Node) { n.FinishedAt = rfc(before(time.Minute)) })),
		},

		// Not stuck: the workflow still waits on something.
		"reports nothing while a pod still runs": {
			in: family(func(f *FamilyFacts) {
				f.Workflow.Nodes["wf-2"] = Node{Type: nodeTypePod, Phase: nodeRunning}
				f.Pods["wf-2"] = []*FamilyPod{{Pod: &Pod{Name: "wf-2-pod", Phase: "Running", Containers: []Container{runningContainer("main")}}}}
			}), why: "pod wf-2-pod of node wf-2 is still running",
		},
		"reports nothing while a Pod node waits for its pod": {
			in: family(func(f *FamilyFacts) { f.Workflow.Nodes["wf-2"] = Node{Type: nodeTypePod, Phase: nodePending} }), why: "is Pending without a pod",
		},
		"reports nothing while a suspend node waits": {
			in: family(func(f *FamilyFacts) { f.Workflow.Nodes["wf-s"] = Node{Type: nodeSuspend, Phase: nodeRunning} }), why: "Suspend node wf-s is Running",
		},
		"reports nothing for a suspended workflow": {
			in: family(func(f *FamilyFacts) { f.Workflow.Suspended = true }), why: "suspended",
		},
		"reports nothing for a completed workflow": {
			in: family(func(f *FamilyFacts) { f.Workflow.Completed = true }), why: "completed",
		},
		"reports nothing for a workflow being deleted": {
			in: family(func(f *FamilyFacts) { f.Workflow.Deleting = true }), why: "being deleted",
		},
		"reports nothing for a workflow not started": {
			in: family(func(f *FamilyFacts) { f.Workflow.Phase = nodePending }), why: "not running",
		},
		"reports nothing for a workflow without Pod nodes": {
			in: family(func(f *FamilyFacts) { f.Workflow.Nodes = map[string]Node{"wf": {Type: "Steps", Phase: nodeRunning}} }), why: "no Pod node",
		},

		// What cannot be told.
		"skips a false result carried by two pods": {
			in: family(func(f *FamilyFacts) {
				f.Pods["wf-1"] = append(f.Pods["wf-1"], &FamilyPod{Pod: &Pod{Name: "wf-1-pod-b", Phase: phaseSucceeded}})
			}),
			node: "wf-1", cause: CauseUnclear, verdict: VerdictSkip, next: "check by hand", why: "2 pods carry node ID wf-1",
		},
		"skips a stuck workflow whose nodes are offloaded": {
			in:    family(func(f *FamilyFacts) { f.Workflow.NodesUnreadable = "offloaded"; f.Workflow.Phase = phaseSucceeded }),
			cause: CauseUnclear, verdict: VerdictSkip, why: "nodes unreadable (offloaded)",
		},
		"names the cause by its shape while the account's RBAC is not checked yet": {
			in: family(func(f *FamilyFacts) { f.Rights = nil }), node: "wf-1", cause: Cause12985, verdict: VerdictRepair, action: ActionFlip, why: "(RBAC of default not checked)",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := DiagnoseWorkflow(tc.in, stuckNow, stuckGrace)
			if tc.cause == "" {
				assert.Empty(t, d.Findings)
				assert.Contains(t, d.Reason, tc.why)
				return
			}
			require.Len(t, d.Findings, 1, "%+v", d.Findings)
			got := d.Findings[0]
			assert.Equal(t, tc.node, got.Node)
			assert.Equal(t, tc.cause, got.Cause, got.Reason)
			assert.Equal(t, tc.verdict, got.Verdict, got.Reason)
			assert.Equal(t, tc.action, got.Action)
			assert.Contains(t, got.NextStep, tc.next)
			assert.Contains(t, got.Reason, tc.why)
			assert.Equal(t, tc.verdict == VerdictRepair, got.Decision.Mutates(), "only a repair verdict mutates")
		})
	}
}

func TestDiagnoseWorkflowCreatesTheResultArgoWould(t *testing.T) {
	for name, tc := range map[string]struct {
		in   FamilyFacts
		want map[string]string
	}{
		"labels it with the workflow and complete": {
			in:   family(noResult),
			want: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueTrue},
		},
		"copies the workflow's controller instance ID": {
			in:   family(noResult, func(f *FamilyFacts) { f.Workflow.InstanceID = "team-a" }),
			want: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueTrue, LabelControllerInstanceID: "team-a"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			d := DiagnoseWorkflow(tc.in, stuckNow, stuckGrace)
			require.Len(t, d.Findings, 1)
			assert.Equal(t, tc.want, d.Findings[0].Decision.Set)
			assert.Equal(t, "A4", d.Findings[0].Decision.Rule)
			assert.Equal(t, []string{"wf-1"}, d.Lookups, "the repair looks the name up before creating")
		})
	}
}

func TestDiagnoseWorkflowAsksForTheRightsItLacks(t *testing.T) {
	d := DiagnoseWorkflow(family(func(f *FamilyFacts) { f.Rights = nil }, pod(func(p *FamilyPod) { p.ServiceAccount = "runner" })), stuckNow, stuckGrace)
	assert.Equal(t, []string{"runner"}, d.Unchecked)
	d = DiagnoseWorkflow(family(), stuckNow, stuckGrace)
	assert.Empty(t, d.Unchecked, "rights given")
	d = DiagnoseWorkflow(family(gone(time.Hour)), stuckNow, stuckGrace)
	assert.Empty(t, d.Unchecked, "no pod, no account to check")
}

func TestDiagnoseWorkflowExplainsEveryNode(t *testing.T) {
	in := family(func(f *FamilyFacts) {
		f.All = true
		f.Workflow.Nodes["wf-0"] = Node{Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: rfc(before(time.Hour))}
		f.Workflow.Nodes["wf"] = Node{Type: "Steps", Phase: nodeRunning}
	})
	d := DiagnoseWorkflow(in, stuckNow, stuckGrace)
	require.Len(t, d.Findings, 2, "every Pod node, and no other")
	assert.Equal(t, "wf-0", d.Findings[0].Node)
	assert.Equal(t, VerdictOK, d.Findings[0].Verdict)
	assert.Equal(t, "nothing to do", d.Findings[0].NextStep)
	assert.Equal(t, Cause12985, d.Findings[1].Cause)

	// A workflow not stuck yet: its nodes are explained, their repairs held back.
	in.Workflow.Nodes["wf-2"] = Node{Type: nodeTypePod, Phase: nodeRunning}
	in.Pods["wf-2"] = []*FamilyPod{{Pod: &Pod{Name: "wf-2-pod", Phase: "Running", Containers: []Container{runningContainer("main")}}}}
	d = DiagnoseWorkflow(in, stuckNow, stuckGrace)
	assert.False(t, d.Stuck)
	require.Len(t, d.Findings, 3)
	held := d.Findings[1]
	assert.Equal(t, Cause12985, held.Cause)
	assert.Equal(t, VerdictWait, held.Verdict)
	assert.False(t, held.Decision.Mutates(), "nothing is repaired before the workflow settles")
	assert.Equal(t, "will repair once every pod of the workflow has finished", held.NextStep)
}

func TestDiagnoseWorkflowIsIdempotent(t *testing.T) {
	for name, in := range map[string]FamilyFacts{
		"a flipped result (#12985)":  family(),
		"a flipped result (R4)":      family(gone(time.Hour)),
		"a created result (R9)":      family(noResult, entry("wf-1", false), gone(time.Hour)),
		"a created result (R10)":     family(noResult),
		"a flipped result (R1)":      family(label("")),
		"a created result (R2, now)": family(noResult, entry("wf-1", false), pod(func(p *FamilyPod) { p.Fallback = true })),
	} {
		t.Run(name, func(t *testing.T) {
			first := DiagnoseWorkflow(in, stuckNow, stuckGrace)
			require.Len(t, first.Findings, 1)
			require.True(t, first.Findings[0].Decision.Mutates())
			// Apply it: the result exists now, with the labels the decision set.
			tr := in.TaskResults["wf-1"]
			if tr == nil {
				tr = &FamilyTaskResult{StuckTaskResult: StuckTaskResult{Name: "wf-1", Labels: map[string]string{}, OwnerWorkflowUID: "uid-1"}}
				in.TaskResults["wf-1"] = tr
			}
			for k, v := range first.Findings[0].Decision.Set {
				tr.Labels[k] = v
			}
			second := DiagnoseWorkflow(in, stuckNow, stuckGrace)
			for _, fd := range second.Findings {
				assert.False(t, fd.Decision.Mutates(), "running the diagnosis on its own output repairs nothing: %+v", fd)
			}
		})
	}
}

// A workflow that argo retry can take (terminal phase, completed=false) is repaired all at once or
// not at all: a lone "true" would survive the retry into the new attempt of its node.
func TestDiagnoseWorkflowRepairsARetryableWorkflowTogether(t *testing.T) {
	withLostNode := func(f *FamilyFacts) {
		f.Workflow.Nodes["wf-2"] = Node{Type: nodeTypePod, Phase: phaseFailed, StartedAt: rfc(before(62 * time.Minute)), FinishedAt: rfc(before(4 * time.Minute))}
		f.TaskResults["wf-2"] = &FamilyTaskResult{StuckTaskResult: StuckTaskResult{Name: "wf-2",
			Labels:  map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueFalse},
			Created: before(time.Hour), OwnerWorkflowUID: "uid-1"}}
		f.Pods["wf-2"] = []*FamilyPod{{UID: "pod-uid-2", Pod: &Pod{Name: "wf-2-pod", WorkflowUID: "uid-1", Created: before(61 * time.Minute),
			Phase: podPhaseFailed, Containers: []Container{runningContainer("main")}}}}
	}
	cases := map[string]struct {
		phase       string
		wantVerdict Verdict
	}{
		"holds back the repairable node of a Failed workflow while another node is lost (R7)": {phase: phaseFailed, wantVerdict: VerdictSkip},
		"holds back the repairable node of a Succeeded workflow in the v3.5.4 shape too":      {phase: phaseSucceeded, wantVerdict: VerdictSkip},
		"repairs the repairable node of a Running workflow (argo retry refuses those)":        {phase: nodeRunning, wantVerdict: VerdictRepair},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := family(withLostNode, func(f *FamilyFacts) { f.Workflow.Phase = tc.phase }, settled)
			d := DiagnoseWorkflow(f, stuckNow, stuckGrace)
			verdicts := map[string]Verdict{}
			for _, fd := range d.Findings {
				verdicts[fd.Node] = fd.Verdict
				if fd.Node == "wf-1" {
					assert.Equal(t, tc.wantVerdict == VerdictRepair, fd.Decision.Mutates())
					if tc.wantVerdict == VerdictSkip {
						assert.Contains(t, fd.NextStep, "repaired together with node(s) wf-2")
					}
				}
			}
			assert.Equal(t, map[string]Verdict{"wf-1": tc.wantVerdict, "wf-2": VerdictManual}, verdicts)
		})
	}
}
