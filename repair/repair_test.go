package repair

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var taskResults = schema.GroupResource{Group: "argoproj.io", Resource: "workflowtaskresults"}

func notFound() error  { return apierrors.NewNotFound(taskResults, "wf-1") }
func forbidden() error { return apierrors.NewForbidden(taskResults, "wf-1", errors.New("no")) }

// decided is the fingerprint of the facts a first pass decides on: a Failed node whose one pod
// still exists, in a Failed workflow.
func decided(mods ...func(*fingerprint)) fingerprint {
	f := fingerprint{
		TaskResultUID: "tr-uid", WorkflowUID: "wf-uid", WorkflowPhase: "Failed",
		WorkflowStartedAt: "2026-11-27T10:00:00Z", WorkflowFinishedAt: "2026-11-27T11:00:00Z",
		NodePhase: "Failed", NodeStartedAt: "2026-11-27T10:01:00Z", NodeFinishedAt: "2026-11-27T10:59:00Z",
		PodUIDs: "pod-uid-1",
	}
	for _, m := range mods {
		m(&f)
	}
	return f
}

func TestFingerprintChanges(t *testing.T) {
	for name, tc := range map[string]struct {
		now  fingerprint
		want string // "" when nothing changed
	}{
		"sees nothing when nothing changed": {now: decided()},
		"sees the pods a retry deleted before it updates the workflow": {
			now:  decided(func(f *fingerprint) { f.PodUIDs = "" }),
			want: "pods carrying the node ID pod-uid-1 -> (none)",
		},
		"sees the node a retry removed and the workflow it reset": {
			now: decided(func(f *fingerprint) {
				f.PodUIDs, f.NodePhase, f.NodeStartedAt, f.NodeFinishedAt = "", "", "", ""
				f.WorkflowPhase, f.WorkflowStartedAt, f.WorkflowFinishedAt = "Running", "2026-11-27T12:00:00Z", ""
			}),
			want: "workflow phase Failed -> Running, workflow startedAt 2026-11-27T10:00:00Z -> 2026-11-27T12:00:00Z, " +
				"workflow finishedAt 2026-11-27T11:00:00Z -> (none), node phase Failed -> (none), " +
				"node startedAt 2026-11-27T10:01:00Z -> (none), node finishedAt 2026-11-27T10:59:00Z -> (none), " +
				"pods carrying the node ID pod-uid-1 -> (none)",
		},
		"sees a new attempt's pod with the same node ID": {
			now:  decided(func(f *fingerprint) { f.PodUIDs = "pod-uid-2" }),
			want: "pods carrying the node ID pod-uid-1 -> pod-uid-2",
		},
		"sees the node re-created for a new attempt": {
			now: decided(func(f *fingerprint) {
				f.NodePhase, f.NodeStartedAt, f.NodeFinishedAt = "Running", "2026-11-27T12:00:05Z", ""
			}),
			want: "node phase Failed -> Running, node startedAt 2026-11-27T10:01:00Z -> 2026-11-27T12:00:05Z, node finishedAt 2026-11-27T10:59:00Z -> (none)",
		},
		"sees a workflow re-created under the same name": {
			now:  decided(func(f *fingerprint) { f.WorkflowUID = "wf-uid-2" }),
			want: "workflow UID wf-uid -> wf-uid-2",
		},
		"sees a workflow that is gone": {
			now: decided(func(f *fingerprint) {
				f.WorkflowUID, f.WorkflowPhase, f.WorkflowStartedAt, f.WorkflowFinishedAt = "", "", "", ""
				f.NodePhase, f.NodeStartedAt, f.NodeFinishedAt = "", "", ""
			}),
			want: "workflow UID wf-uid -> (none), workflow phase Failed -> (none)",
		},
		"sees a task result re-created under the same name": {
			now:  decided(func(f *fingerprint) { f.TaskResultUID = "tr-uid-2" }),
			want: "task result UID tr-uid -> tr-uid-2",
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := decided().changes(tc.now)
			if tc.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tc.want)
		})
	}
}

func TestUnreadable(t *testing.T) {
	row := Row{Namespace: "ns", Workflow: "wf", TaskResult: "wf-1", Verdict: VerdictRepair, Reason: "every executor container terminated"}
	for name, tc := range map[string]struct {
		err     error
		verdict string
		reason  string
	}{
		"skips a task result deleted meanwhile": {err: notFound(), verdict: VerdictSkip, reason: "deleted meanwhile"},
		"counts any other failure as an error":  {err: forbidden(), verdict: VerdictError, reason: "re-reading: "},
	} {
		t.Run(name, func(t *testing.T) {
			got := unreadable(row, "re-reading", tc.err)
			assert.Equal(t, tc.verdict, got.Verdict)
			assert.Contains(t, got.Reason, tc.reason)
			assert.Equal(t, "wf-1", got.TaskResult)
		})
	}
}

func TestOwnerUID(t *testing.T) {
	for name, tc := range map[string]struct {
		owners        []metav1.OwnerReference
		workflow, pod string
	}{
		"reads a Workflow owner (argoexec v3.5.2 and later)": {
			owners: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", UID: "wf-uid"}}, workflow: "wf-uid",
		},
		"reads a Pod owner (argoexec v3.3.2 to v3.5.1)": {
			owners: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", UID: "pod-uid"}}, pod: "pod-uid",
		},
		"reads both": {
			owners:   []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", UID: "pod-uid"}, {APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", UID: "wf-uid"}},
			workflow: "wf-uid", pod: "pod-uid",
		},
		"reads none": {},
		"ignores a Workflow of another API group": {
			owners: []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Workflow", UID: "x"}},
		},
		"ignores a Pod of another API group": {
			owners: []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Pod", UID: "x"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			tr := &unstructured.Unstructured{}
			tr.SetOwnerReferences(tc.owners)
			assert.Equal(t, tc.workflow, ownerUID(tr, "argoproj.io", "Workflow"))
			assert.Equal(t, tc.pod, ownerUID(tr, "", "Pod"))
		})
	}
}
