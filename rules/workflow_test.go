package rules

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"
)

const controllerSA = "system:serviceaccount:argo:argo"

// stuckWorkflow builds the v3.5.3–v3.5.4 #12985 shape: phase Succeeded, completed="false",
// finishedAt null, one resource node done whose task result is incomplete.
func stuckWorkflow(mods ...func(*Workflow)) Workflow {
	wf := Workflow{
		Operation: OperationUpdate,
		Username:  controllerSA,
		Labels:    map[string]string{LabelCompleted: valueFalse, LabelPhase: phaseSucceeded, LabelWorkflow: "ignored"},
		Phase:     phaseSucceeded,
		Nodes: map[string]Node{
			"wf":         {Type: "Steps", Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:45Z"},
			"wf-1111111": {Type: nodeTypePod, Phase: phaseSucceeded, StartedAt: "2024-04-26T10:50:27Z", FinishedAt: "2024-04-26T10:50:41Z"},
			"wf-2222222": {Type: nodeTypePod, Phase: phaseSucceeded, StartedAt: "2024-04-26T10:50:27Z", FinishedAt: "2024-04-26T10:50:48Z"},
			"wf-3333333": {Type: "Skipped", Phase: phaseSkipped},
		},
		TaskResultsCompletion: map[string]bool{"wf-1111111": false, "wf-2222222": true},
	}
	for _, m := range mods {
		m(&wf)
	}
	return wf
}

func controllerOnly() WorkflowConfig {
	return WorkflowConfig{ControllerUsernames: []string{controllerSA}, Grace: 2 * time.Minute, OrphanGrace: 10 * time.Minute}
}

// b2Now is ten minutes after stuckWorkflow's last node finished: past any grace.
var b2Now = mustTime("2024-04-26T11:00:48Z")

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func terminatedResourcePod() *Pod {
	return &Pod{Name: "wf-main-1111111", Containers: []Container{{Name: "main", Terminated: true, TerminatedAt: mustTime("2024-04-26T10:50:41Z")}}}
}

// storedFalse is the incomplete task result as the API server holds it: "false", no outputs.
func storedFalse() map[string]*StoredTaskResult {
	return map[string]*StoredTaskResult{"wf-1111111": {Labels: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueFalse}}}
}

// withOutputs returns the stored task result of wf-1111111 holding outputs.
func withOutputs(outputs string) map[string]*StoredTaskResult {
	trs := storedFalse()
	trs["wf-1111111"].Outputs = json.RawMessage(outputs)
	return trs
}

// nodeOutputs sets the outputs the controller merged into node wf-1111111.
func nodeOutputs(outputs string) func(*Workflow) {
	return func(wf *Workflow) {
		n := wf.Nodes["wf-1111111"]
		n.Outputs = json.RawMessage(outputs)
		wf.Nodes["wf-1111111"] = n
	}
}

func TestDecideWorkflow(t *testing.T) {
	completes := map[string]string{LabelCompleted: valueTrue}
	gone := map[string]*Pod{}
	terminated := map[string]*Pod{"wf-1111111": terminatedResourcePod()}
	cases := map[string]struct {
		wf       Workflow
		cfg      WorkflowConfig
		pods     map[string]*Pod
		trs      map[string]*StoredTaskResult // nil: storedFalse()
		listed   []string                     // nil: the completion map's keys
		unlisted bool                         // the task results were not listed
		now      time.Time                    // zero: b2Now
		wantSet  map[string]string
		wantStat *StatusChange
	}{
		"completes the v3.5.4 stuck shape whose resource pod has terminated": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, wantSet: completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"completes the stuck shape whose pod is gone": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: gone, wantSet: completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"completes a Failed workflow in the stuck shape": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Phase, wf.Labels[LabelPhase] = phaseFailed, phaseFailed
				wf.Nodes["wf-1111111"] = Node{Type: nodeTypePod, Phase: phaseFailed, FinishedAt: "2024-04-26T10:50:41Z"}
			}),
			cfg: controllerOnly(), pods: gone, wantSet: completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"queues for the archive when the controller archives and the selector matches": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Labels["team"] = "a" }),
			cfg: WorkflowConfig{ControllerUsernames: []string{controllerSA}, Archive: true,
				ArchiveSelector: labels.SelectorFromSet(labels.Set{"team": "a"})},
			pods:     gone,
			wantSet:  map[string]string{LabelCompleted: valueTrue, LabelArchivingStatus: archivePending},
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"does not queue for the archive when the selector does not match": {
			wf: stuckWorkflow(),
			cfg: WorkflowConfig{ControllerUsernames: []string{controllerSA}, Archive: true,
				ArchiveSelector: labels.SelectorFromSet(labels.Set{"team": "a"})},
			pods: gone, wantSet: completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"acts on any writer when no controller username is configured": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Username = "admin" }), cfg: WorkflowConfig{}, pods: gone,
			wantSet:  completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		// Every condition of B2 failing one at a time.
		"ignores CREATE (submit, resubmit)": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Operation = OperationCreate }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a writer that is not the controller": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Username = "system:serviceaccount:argo:argo-server" }), cfg: controllerOnly(), pods: gone,
		},
		"ignores the v3.5.5+ Running shape": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Phase, wf.Labels[LabelPhase] = "Running", "Running"
				wf.Nodes["wf-1111111"] = Node{Type: nodeTypePod, Phase: "Running"}
			}),
			cfg: controllerOnly(), pods: terminated,
		},
		"ignores a retry that removes the completed label and resets the phase to Running": {
			wf: stuckWorkflow(func(wf *Workflow) {
				delete(wf.Labels, LabelCompleted)
				wf.Phase, wf.Labels[LabelPhase] = "Running", "Running"
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores a retry that removes the completed label and resets the phase to empty": {
			wf: stuckWorkflow(func(wf *Workflow) {
				delete(wf.Labels, LabelCompleted)
				wf.Phase = ""
				delete(wf.Labels, LabelPhase)
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow whose completed label is absent": {
			wf: stuckWorkflow(func(wf *Workflow) { delete(wf.Labels, LabelCompleted) }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow already completed": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Labels[LabelCompleted] = valueTrue }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a phase label that differs from status.phase": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.Labels[LabelPhase] = phaseFailed }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow whose finishedAt is set": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.FinishedAt = "2024-04-26T10:50:50Z" }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow with a daemoned node": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes["wf-4444444"] = Node{Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:41Z", Daemoned: true}
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow with an unfulfilled node": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes["wf-4444444"] = Node{Type: nodeTypePod, Phase: "Running"}
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores a node completed but not synced (v3.7.1+)": {
			wf: stuckWorkflow(func(wf *Workflow) {
				f := false
				wf.Nodes["wf-4444444"] = Node{Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:41Z", TaskResultSynced: &f}
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores an incomplete task result whose node is not a Pod node": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.TaskResultsCompletion["wf"] = false }), cfg: controllerOnly(), pods: gone,
		},
		"ignores an incomplete task result with no node": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.TaskResultsCompletion["wf-9999999"] = false }), cfg: controllerOnly(), pods: gone,
		},
		"ignores an incomplete task result whose node has no finishedAt": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes["wf-1111111"] = Node{Type: nodeTypePod, Phase: phaseSucceeded}
			}),
			cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow whose incomplete task result's pod still runs its executor": {
			wf: stuckWorkflow(), cfg: controllerOnly(),
			pods: map[string]*Pod{"wf-1111111": {Name: "p", Containers: []Container{{Name: "main"}}}},
		},
		"ignores a wait-container pod whose wait container still runs although main has ended": {
			wf: stuckWorkflow(), cfg: controllerOnly(),
			pods: map[string]*Pod{"wf-1111111": {Name: "p", Containers: []Container{{Name: "main", Terminated: true}, {Name: "wait"}}}},
		},
		"ignores a workflow without any incomplete task result": {
			wf: stuckWorkflow(func(wf *Workflow) { wf.TaskResultsCompletion["wf-1111111"] = true }), cfg: controllerOnly(), pods: gone,
		},
		"ignores a workflow whose nodes are offloaded": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes = nil
				wf.NodesUnreadable = "offloaded"
			}),
			cfg: controllerOnly(), pods: gone,
		},
		// Never before the executors' writes have landed and reached the nodes.
		"waits out the grace after the executors terminated": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, now: mustTime("2024-04-26T10:51:11Z"),
		},
		"waits out the grace after a gone pod's node finished": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: gone, now: mustTime("2024-04-26T10:51:11Z"),
		},
		"waits out the orphan grace (10m), not the pod grace, when the pod is gone": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: gone, now: mustTime("2024-04-26T10:55:41Z"),
		},
		"ignores a finished Pod node without a finishedAt": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes["wf-4444444"] = Node{Type: nodeTypePod, Phase: phaseSucceeded}
			}),
			cfg: controllerOnly(), pods: terminated,
		},
		"completes once the grace has passed since the executors terminated": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, now: mustTime("2024-04-26T10:52:49Z"), wantSet: completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"ignores an executor container that reports no termination time": {
			wf: stuckWorkflow(), cfg: controllerOnly(),
			pods: map[string]*Pod{"wf-1111111": {Name: "p", Containers: []Container{{Name: "main", Terminated: true}}}},
		},
		"ignores a wait pod whose wait container terminated within the grace although main ended long ago": {
			wf: stuckWorkflow(), cfg: controllerOnly(), now: mustTime("2024-04-26T10:52:00Z"),
			pods: map[string]*Pod{"wf-1111111": {Name: "p", Containers: []Container{
				{Name: "main", Terminated: true, TerminatedAt: mustTime("2024-04-26T10:40:00Z")},
				{Name: "wait", Terminated: true, TerminatedAt: mustTime("2024-04-26T10:51:00Z")}}}},
		},
		"ignores a task result already complete at the API server (the controller's informer lags)": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated,
			trs: map[string]*StoredTaskResult{"wf-1111111": {Labels: map[string]string{LabelWorkflow: "wf", LabelReportOutputsCompleted: valueTrue}}},
		},
		"ignores a task result holding outputs the node does not carry yet (late ReportOutputs)": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated,
			trs: withOutputs(`{"parameters":[{"name":"p","value":"v"}],"exitCode":"0"}`),
		},
		"ignores a task result whose outputs differ from the node's": {
			wf:  stuckWorkflow(nodeOutputs(`{"parameters":[{"name":"p","value":"old"}],"exitCode":"0"}`)),
			cfg: controllerOnly(), pods: terminated,
			trs: withOutputs(`{"parameters":[{"name":"p","value":"v"}],"exitCode":"0"}`),
		},
		"ignores a task result whose outputs are not an object": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, trs: withOutputs(`"garbage"`),
		},
		"completes when the node carries the task result's outputs (wait died after ReportOutputs)": {
			wf:  stuckWorkflow(nodeOutputs(`{"exitCode":"0","parameters":[{"value":"v","name":"p"}],"artifacts":[]}`)),
			cfg: controllerOnly(), pods: terminated,
			trs:      withOutputs(`{"parameters":[{"name":"p","value":"v"}],"exitCode":"0"}`),
			wantSet:  completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"waits out the grace after any Pod node finished, even one whose task result is complete": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, now: mustTime("2024-04-26T10:52:45Z"),
		},
		"ignores a task result the controller has not seen yet (no entry in the map)": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, listed: []string{"wf-1111111", "wf-2222222", "wf-5555555"},
		},
		"ignores a workflow whose task results were not listed": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, unlisted: true,
		},
		"ignores a pod owned by another workflow of the same name": {
			wf:  stuckWorkflow(func(wf *Workflow) { wf.UID = "uid-new" }),
			cfg: controllerOnly(),
			pods: map[string]*Pod{"wf-1111111": {Name: "p", WorkflowUID: "uid-old", Containers: []Container{
				{Name: "main", Terminated: true, TerminatedAt: mustTime("2024-04-26T10:50:41Z")}}}},
		},
		"ignores a pod that ended before its node started (an earlier attempt's pod)": {
			wf: stuckWorkflow(func(wf *Workflow) {
				n := wf.Nodes["wf-1111111"]
				n.StartedAt = "2024-04-26T10:50:45Z"
				n.FinishedAt = "2024-04-26T10:50:47Z"
				wf.Nodes["wf-1111111"] = n
			}),
			cfg: controllerOnly(), pods: terminated,
		},
		"ignores an incomplete entry's node without startedAt (its pod's attempt is unknown)": {
			wf: stuckWorkflow(func(wf *Workflow) {
				n := wf.Nodes["wf-1111111"]
				n.StartedAt = ""
				wf.Nodes["wf-1111111"] = n
			}),
			cfg: controllerOnly(), pods: terminated,
		},
		"ignores a workflow with the artifact-gc finalizer": {
			wf:  stuckWorkflow(func(wf *Workflow) { wf.Finalizers = []string{"workflows.argoproj.io/artifact-gc"} }),
			cfg: controllerOnly(), pods: terminated,
		},
		"ignores an empty result the node does not carry (the controller merges \"\")": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, trs: withOutputs(`{"result":""}`),
		},
		"completes when the task result's outputs are empty lists and objects": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, trs: withOutputs(`{"parameters":[],"artifacts":null,"x":{}}`),
			wantSet:  completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"completes when the task result is gone": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, trs: map[string]*StoredTaskResult{"wf-1111111": nil},
			wantSet:  completes,
			wantStat: &StatusChange{FinishedAt: "2024-04-26T10:50:48Z", CompleteTaskResults: []string{"wf-1111111"}},
		},
		"ignores a task result that was not read": {
			wf: stuckWorkflow(), cfg: controllerOnly(), pods: terminated, trs: map[string]*StoredTaskResult{},
		},
		"ignores everything when B2 is turned off": {
			wf: stuckWorkflow(), cfg: WorkflowConfig{Disabled: true, ControllerUsernames: []string{controllerSA}}, pods: terminated,
		},
		"ignores a node finishedAt that is not a timestamp": {
			wf: stuckWorkflow(func(wf *Workflow) {
				wf.Nodes["wf"] = Node{Type: "Steps", Phase: phaseSucceeded, FinishedAt: "yesterday"}
			}),
			cfg: controllerOnly(), pods: gone,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			trs, now := tc.trs, tc.now
			if trs == nil {
				trs = storedFalse()
			}
			if now.IsZero() {
				now = b2Now
			}
			listed := tc.listed
			if listed == nil && !tc.unlisted {
				for id := range tc.wf.TaskResultsCompletion {
					listed = append(listed, id)
				}
			}
			facts := WorkflowFacts{Now: now, Pods: tc.pods, TaskResults: trs, Listed: listed}
			d := DecideWorkflow(tc.wf, tc.cfg, facts)
			// A reader that streams the nodes passes their summary and keeps only the nodes of
			// the incomplete entries: B2 decides the same.
			streamed := tc.wf
			sum := SummarizeNodes(tc.wf.Nodes)
			streamed.Summary, streamed.Nodes = &sum, map[string]Node{}
			for id, done := range tc.wf.TaskResultsCompletion {
				if n, ok := tc.wf.Nodes[id]; ok && !done {
					streamed.Nodes[id] = n
				}
			}
			assert.Equal(t, d, DecideWorkflow(streamed, tc.cfg, facts), "decided from the summary")
			assert.Equal(t, tc.wantSet, d.Set)
			assert.Equal(t, tc.wantStat, d.Status)
			assert.NotEmpty(t, d.Reason)
			if tc.wantSet != nil {
				assert.Equal(t, "B2", d.Rule)
			} else {
				assert.Empty(t, d.Rule)
			}
		})
	}
}

func TestDecideWorkflowIsIdempotent(t *testing.T) {
	wf := stuckWorkflow()
	facts := WorkflowFacts{Now: b2Now, TaskResults: storedFalse(), Listed: []string{"wf-1111111", "wf-2222222"}}
	first := DecideWorkflow(wf, controllerOnly(), facts)
	require.True(t, first.Mutates())

	wf.Labels[LabelCompleted] = first.Set[LabelCompleted]
	wf.FinishedAt = first.Status.FinishedAt
	for _, id := range first.Status.CompleteTaskResults {
		wf.TaskResultsCompletion[id] = true
	}
	second := DecideWorkflow(wf, controllerOnly(), facts)
	assert.False(t, second.Mutates(), "running B2 on its own output decides nothing")
}

func TestPrecheckWorkflowLabelsDecidesWithoutStatus(t *testing.T) {
	// A Running workflow is decided by its labels alone: no status is read.
	wf := Workflow{Operation: OperationUpdate, Username: controllerSA, Labels: map[string]string{LabelCompleted: valueFalse, LabelPhase: "Running"}}
	d, ok := PrecheckWorkflowLabels(wf, controllerOnly())
	assert.False(t, ok)
	assert.Contains(t, d.Reason, "not terminal")

	wf.Labels[LabelPhase] = phaseSucceeded
	_, ok = PrecheckWorkflowLabels(wf, controllerOnly())
	assert.True(t, ok, "a terminal phase label with completed=false needs the status read")
}

func TestNodeSummaryAdd(t *testing.T) {
	f := false
	cases := map[string]struct {
		nodes map[string]Node
		want  NodeSummary
	}{
		"no nodes": {},
		"finished nodes: the last Pod node and the latest finishedAt of any node": {
			nodes: map[string]Node{
				"a": {Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:41Z"},
				"b": {Type: nodeTypePod, Phase: phaseFailed, FinishedAt: "2024-04-26T10:50:48Z"},
				"c": {Type: "Steps", Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:49Z"},
				"d": {Type: nodeTypePod, Phase: phaseSkipped},
			},
			want: NodeSummary{LastPod: "b", LastPodFinished: mustTime("2024-04-26T10:50:48Z"), FinishedAt: "2024-04-26T10:50:49Z", latest: mustTime("2024-04-26T10:50:49Z")},
		},
		"of equal instants, the smallest spelling": {
			nodes: map[string]Node{
				"a": {Type: "Steps", Phase: phaseSucceeded, FinishedAt: "2024-04-26T12:50:49+02:00"},
				"b": {Type: "Steps", Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:49Z"},
			},
			want: NodeSummary{FinishedAt: "2024-04-26T10:50:49Z", latest: mustTime("2024-04-26T10:50:49Z")},
		},
		"the first node that blocks, and a Pod node without finishedAt": {
			nodes: map[string]Node{
				"a": {Type: nodeTypePod, Phase: "Running"},
				"b": {Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:41Z", Daemoned: true},
				"c": {Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "2024-04-26T10:50:41Z", TaskResultSynced: &f},
			},
			want: NodeSummary{Blocker: `node a is not fulfilled (phase "Running")`, PodWithoutFinishedAt: "a",
				LastPod: "b", LastPodFinished: mustTime("2024-04-26T10:50:41Z"), FinishedAt: "2024-04-26T10:50:41Z", latest: mustTime("2024-04-26T10:50:41Z")},
		},
		"a finishedAt that is not a timestamp": {
			nodes: map[string]Node{"a": {Type: nodeTypePod, Phase: phaseSucceeded, FinishedAt: "yesterday"}},
			want:  NodeSummary{PodWithoutFinishedAt: "a", BadFinishedAt: true},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, SummarizeNodes(tc.nodes))
		})
	}
}
