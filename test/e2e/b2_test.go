package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// e2eB2Grace is rule B2's grace in this suite (the shipped default is 2m), so a scenario takes
// seconds. It is longer than lateWrites, as the default is longer than any write that can still
// be on its way once an executor has terminated.
const e2eB2Grace = 10 * time.Second

// b2TTL is the B2 scenarios' ttlStrategy.secondsAfterCompletion. B2 sets finishedAt to the
// latest node's (derived from the object, as the controller would have), which is already past
// the grace, so a 5 s TTL would delete the workflow before a poll sees it completed.
const b2TTL = 40

// lateWrites is how long after its pod is reported terminated the late-writes scenario's wait
// container's last writes (ReportOutputs, FinalizeOutput) land.
const lateWrites = 3 * time.Second

// b2Scenario is one B2 scenario: what is submitted, and whether it is expected to complete
// without the webhook.
type b2Scenario struct {
	name string
	file string
	mods []func(*unstructuredWF)
	// selfHeals: Argo completes it without the webhook (the late writes arrive).
	selfHeals bool
	// a1Missed: the webhook's task-result endpoint is unreachable while the executor writes.
	a1Missed bool
}

func b2Scenarios() []b2Scenario {
	return []b2Scenario{
		{name: "late writes (pod informer ahead of task results)", file: "container.yaml",
			mods: []func(*unstructuredWF){withPodAnnotation(harness.LateWritesAnnotation, lateWrites.String())}, selfHeals: true},
		{name: "wait dies after ReportOutputs (pod Succeeded)", file: "container.yaml",
			mods: []func(*unstructuredWF){withPodAnnotation(harness.WaitDiesAfterReportAnnotation, "true")}},
		{name: "#12985, webhook unreachable at the executor's write", file: "resource-outputs.yaml", a1Missed: true},
	}
}

// TestB2AgainstTheV354Controller runs rule B2 against Argo's real v3.5.4 controller, whose updates
// are attributed to the configured --controller-usernames, in the scenarios where no task result
// is ever finalized or its last writes come late. Each runs without the webhook and with it. The
// outputs the simulated executor reported must be on the workflow's node when it completes.
func TestB2AgainstTheV354Controller(t *testing.T) {
	const version = "v3.5.4"
	if !slices.Contains(e2eVersions, version) {
		t.Skipf("%s is not among E2E_ARGO_VERSIONS (%v): this run was asked for other controllers", version, e2eVersions)
	}
	table := &summary{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "e2e-b2-" + strings.ReplaceAll(version, ".", "-")
	node, ctrl, stop := startArgo(t, ctx, version, ns)
	defer func() {
		stop()
		fmt.Printf("\ne2e B2 summary (controller log %s):\n%s\n", ctrl.LogPath, table)
		_ = os.WriteFile(filepath.Join(logDir, "summary-b2.txt"), []byte(table.String()), 0o644)
	}()

	for _, on := range []bool{false, true} {
		hookState := map[bool]string{false: "off", true: "on"}[on]
		t.Run("webhook "+hookState, func(t *testing.T) {
			if on {
				require.NoError(t, harness.RegisterTaskResultsUnreachable(ctx, admin, hook))
			} else {
				require.NoError(t, harness.Unregister(ctx, admin))
			}
			names := map[string]string{}
			trackers := map[string]*tracker{}
			for _, sc := range b2Scenarios() {
				names[sc.name] = submit(t, ns, sc.file, append(sc.mods, withTTLAfterCompletion(b2TTL))...)
				trackers[sc.name] = track(ctx, ns, names[sc.name])
			}
			if on {
				// The #12985 executor's only write went through unpatched; now the webhook is
				// reachable again for the controller's next update.
				for _, sc := range b2Scenarios() {
					if sc.a1Missed {
						require.Eventually(t, func() bool { return taskResultWritten(ctx, ns, names[sc.name]) }, 2*time.Minute, 200*time.Millisecond)
						assert.Equal(t, []string{"false"}, taskResultLabels(t, ns, names[sc.name]), "A1 could not act")
					}
				}
				require.NoError(t, harness.Register(ctx, admin, hook, ns))
			}
			// Once the grace has passed, the stuck workflows are nudged every few seconds: in a
			// cluster the controller's resync (20 minutes) brings the update B2 acts on.
			nudging, stopNudging := context.WithCancel(ctx)
			defer stopNudging()
			go func() {
				for nudging.Err() == nil {
					for _, name := range names {
						if podsFinishedFor(nudging, ns, name, e2eB2Grace) {
							_ = nudge(nudging, ns, name)
						}
					}
					time.Sleep(3 * time.Second)
				}
			}()
			for _, sc := range b2Scenarios() {
				tr, name := trackers[sc.name], names[sc.name]
				if !on && !sc.selfHeals {
					require.Eventually(t, func() bool { return podsFinishedFor(ctx, ns, name, e2eB2Grace) }, 2*time.Minute, 200*time.Millisecond)
					s, changed := tr.waitFor(observeWindow, func(s state) bool { return s.Gone || s.Completed != "false" || s.FinishedAt != "" })
					require.False(t, changed, "%s: stuck for %s after the grace, nudged: %s", sc.name, observeWindow, s)
					require.Equal(t, "Succeeded", s.Phase)
					table.add(version, hookState, sc.name, fmt.Sprintf("stuck %s past the grace, nudged: phase=%s completed=%s", observeWindow, s.Phase, s.Completed))
					continue
				}
				s, ok := tr.waitFor(3*time.Minute, func(s state) bool { return s.Gone })
				require.True(t, ok, "%s: completed and deleted by TTL: %s", sc.name, s)
				assert.True(t, s.SeenCompleted, "%s: completed=true before deletion", sc.name)
				assert.NotEmpty(t, s.SeenFinishedAt, "%s: finishedAt set", sc.name)
				_, want := node.Ran(name) // recorded when the executor's outputs write lands
				outputs := reportedOutputs(want)
				require.NotEmpty(t, outputs, "%s: the executor reported outputs", sc.name)
				assert.Equal(t, outputs, s.SeenCompletedOutputs, "%s: the reported outputs are on the node when it completes", sc.name)
				table.add(version, hookState, sc.name, fmt.Sprintf("%s, completed, deleted by TTL; outputs on the node: %s", s.SeenPhase, strings.Join(s.SeenCompletedOutputs, ",")))
			}
		})
	}
}

// reportedOutputs turns the outputs the simulated executor reported into sorted "name=value".
func reportedOutputs(reported []map[string]string) []string {
	var out []string
	for _, r := range reported {
		for k, v := range r {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

// taskResultWritten reports whether the workflow has a task result carrying outputs.
func taskResultWritten(ctx context.Context, ns, wf string) bool {
	list, err := listTaskResults(ctx, ns, wf)
	if err != nil {
		return false
	}
	for _, tr := range list.Items {
		if _, ok := tr.Object["outputs"]; ok {
			return true
		}
	}
	return false
}

// podsFinishedFor reports whether every pod of the workflow has finished, its last container
// having terminated at least d ago.
func podsFinishedFor(ctx context.Context, ns, wf string, d time.Duration) bool {
	var pods corev1.PodList
	if err := admin.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{rules.LabelWorkflow: wf}); err != nil || len(pods.Items) == 0 {
		return false
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return false
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Terminated == nil || time.Since(c.State.Terminated.FinishedAt.Time) < d {
				return false
			}
		}
	}
	return true
}

// withTTLAfterCompletion sets the workflow's ttlStrategy.secondsAfterCompletion.
func withTTLAfterCompletion(seconds int64) func(*unstructuredWF) {
	return func(wf *unstructuredWF) {
		if err := unstructured.SetNestedField(wf.Object, seconds, "spec", "ttlStrategy", "secondsAfterCompletion"); err != nil {
			panic(err)
		}
	}
}
