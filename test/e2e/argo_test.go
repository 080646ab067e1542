package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// observeWindow is how long a workflow without the webhook must stay stuck to count as stuck.
// Argo's own requeue here is 2 s (DEFAULT_REQUEUE_TIME), so 15 s spans several reconciles.
const observeWindow = 15 * time.Second

// concurrent is the number of #12985 workflows submitted at once with the webhook.
const concurrent = 50

// summary collects one line per scenario for the table printed at the end.
type summary struct {
	mu   sync.Mutex
	rows [][4]string
}

func (s *summary) add(version, hook, scenario, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, [4]string{version, hook, scenario, outcome})
}

func (s *summary) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sort.Slice(s.rows, func(i, j int) bool {
		return strings.Join(s.rows[i][:], "|") < strings.Join(s.rows[j][:], "|")
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-8s %-44s %s\n", "argo", "webhook", "scenario", "outcome")
	for _, r := range s.rows {
		fmt.Fprintf(&b, "%-8s %-8s %-44s %s\n", r[0], r[1], r[2], r[3])
	}
	return b.String()
}

func TestArgoController(t *testing.T) {
	table := &summary{}
	for _, version := range e2eVersions {
		t.Run(version, func(t *testing.T) { runVersion(t, version, table) })
	}
	fmt.Printf("\ne2e summary (controller logs in %s):\n%s\n", logDir, table)
	_ = os.WriteFile(filepath.Join(logDir, "summary.txt"), []byte(table.String()), 0o644)
}

func runVersion(t *testing.T, version string, table *summary) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "e2e-" + strings.ReplaceAll(version, ".", "-")
	node, _, stop := startArgo(t, ctx, version, ns)
	defer stop()

	t.Run("without webhook", func(t *testing.T) {
		require.NoError(t, harness.Unregister(ctx, admin))
		stuck := map[string]string{"resource outputs (#12985)": "resource-outputs.yaml", "data outputs": "data-outputs.yaml"}
		stuckTrackers := map[string]*tracker{}
		// Deferred first, so it runs last: once the stuck shapes are proven, `repair --apply`
		// completes them (the webhook still off) and Argo's own controller finishes the job.
		defer t.Run("repair --apply of the stuck workflows", func(t *testing.T) {
			var out bytes.Buffer
			// The simulated pods finished moments ago; the clock is moved past the 2m pod grace.
			// A short confirmation delay: nothing retries these workflows meanwhile.
			sum, err := repair.Run(ctx, repair.Options{RESTConfig: adminCfg, Namespace: ns, Apply: true, ConfirmAfter: time.Second,
				Now: func() time.Time { return time.Now().Add(repair.DefaultPodGrace + time.Second) }, Out: &out, Err: &bytes.Buffer{}})
			require.NoError(t, err, out.String())
			assert.Equal(t, len(stuck), sum.Repaired, out.String())
			for scenario, tr := range stuckTrackers {
				outcome := assertCompletedAndDeleted(t, tr, "Succeeded")
				table.add(version, "off", scenario+" + repair --apply", outcome)
			}
		})
		for scenario, file := range stuck {
			name := submit(t, ns, file)
			stuckTrackers[scenario] = track(ctx, ns, name)
			defer t.Run(scenario, func(t *testing.T) {
				table.add(version, "off", scenario, assertStuck(t, ctx, version, ns, name, stuckTrackers[scenario]))
			})
		}
		for scenario, tc := range map[string]struct {
			file  string
			phase string
			mods  []func(*unstructuredWF)
		}{
			"container template":               {file: "container.yaml", phase: "Succeeded"},
			"failing resource template":        {file: "resource-failed.yaml", phase: "Failed"},
			"resource outputs, fixed executor": {file: "resource-outputs.yaml", phase: "Succeeded", mods: []func(*unstructuredWF){withFixedExecutor}},
		} {
			name := submit(t, ns, tc.file, tc.mods...)
			tr := track(ctx, ns, name)
			defer t.Run(scenario, func(t *testing.T) {
				table.add(version, "off", scenario, assertCompletedAndDeleted(t, tr, tc.phase))
			})
		}
	})

	t.Run("with webhook", func(t *testing.T) {
		require.NoError(t, harness.Register(ctx, admin, hook, ns))
		for scenario, tc := range map[string]struct {
			file  string
			phase string
		}{
			"resource outputs (#12985)": {file: "resource-outputs.yaml", phase: "Succeeded"},
			"data outputs":              {file: "data-outputs.yaml", phase: "Succeeded"},
			"container template":        {file: "container.yaml", phase: "Succeeded"},
			"failing resource template": {file: "resource-failed.yaml", phase: "Failed"},
		} {
			tr := track(ctx, ns, submit(t, ns, tc.file))
			defer t.Run(scenario, func(t *testing.T) {
				table.add(version, "on", scenario, assertCompletedAndDeleted(t, tr, tc.phase))
			})
		}
		steps := submit(t, ns, "steps-mixed.yaml")
		stepsTracker := track(ctx, ns, steps)
		defer t.Run("steps: resource, container, data, consumer", func(t *testing.T) {
			outcome := assertCompletedAndDeleted(t, stepsTracker, "Succeeded")
			_, created := node.Ran(steps + "-create-cm-")
			consumed, _ := node.Ran(steps + "-consume-")
			require.Len(t, created, 1, "one create-cm pod")
			require.Len(t, consumed, 1, "one consume pod")
			value := created[0]["name"]
			require.NotEmpty(t, value, "the resource step reported its output")
			// The emissary executor wraps main's command: argoexec emissary ... -- /argosay echo <value>.
			assert.True(t, strings.HasSuffix(consumed[0], "-- /argosay echo "+value), "the consumer received the resource step's output %q: %s", value, consumed[0])
			table.add(version, "on", "steps: output consumed", fmt.Sprintf("%s; consumer got %s", outcome, value))
		})
		trackers := make([]*tracker, concurrent)
		for i := range trackers {
			trackers[i] = track(ctx, ns, submit(t, ns, "resource-outputs.yaml"))
		}
		defer t.Run(fmt.Sprintf("%d concurrent #12985 workflows", concurrent), func(t *testing.T) {
			deleted := 0
			for i, tr := range trackers {
				s, ok := tr.waitFor(4*time.Minute, func(s state) bool { return s.Gone })
				if assert.True(t, ok, "workflow %d deleted by TTL: %s", i, s) && assert.True(t, s.SeenCompleted, "workflow %d completed before deletion", i) {
					deleted++
				}
			}
			table.add(version, "on", fmt.Sprintf("%d concurrent #12985", concurrent), fmt.Sprintf("%d/%d completed and deleted by TTL", deleted, concurrent))
		})
	})
}

// assertStuck checks the version's documented #12985 shape holds for the whole observation
// window: v3.5.4 phase Succeeded with completed "false"; v3.7.x phase Running. It fails if the
// workflow completes, so the suite proves the bug as well as the fix.
func assertStuck(t *testing.T, ctx context.Context, version, ns, name string, tr *tracker) string {
	t.Helper()
	wantPhase := "Running"
	if version == "v3.5.4" {
		wantPhase = "Succeeded"
		_, ok := tr.waitFor(2*time.Minute, func(s state) bool { return s.Phase == "Succeeded" })
		require.True(t, ok, "v3.5.4 moves the phase to Succeeded")
	} else {
		require.Eventually(t, func() bool { return podsSucceeded(ctx, ns, name) }, 2*time.Minute, 200*time.Millisecond, "the pod finished")
	}
	s, completed := tr.waitFor(observeWindow, func(s state) bool {
		return s.Gone || s.Completed != "false" || s.Phase != wantPhase || s.FinishedAt != ""
	})
	require.False(t, completed, "stuck for %s: %s", observeWindow, s)
	assert.Equal(t, []string{"false"}, taskResultLabels(t, ns, name), "the task result was never finalized")
	return fmt.Sprintf("stuck %s: phase=%s completed=%s, task result false, not deleted", observeWindow, s.Phase, s.Completed)
}

// assertCompletedAndDeleted checks the workflow ends in phase with completed "true" and
// finishedAt set, then is deleted by Argo's TTL controller (secondsAfterCompletion: 5).
func assertCompletedAndDeleted(t *testing.T, tr *tracker, phase string) string {
	t.Helper()
	s, ok := tr.waitFor(3*time.Minute, func(s state) bool { return s.Gone })
	require.True(t, ok, "deleted by TTL within 3m: %s", s)
	assert.True(t, s.SeenCompleted, "completed=true before deletion")
	assert.Equal(t, phase, s.SeenPhase)
	assert.NotEmpty(t, s.SeenFinishedAt, "finishedAt set")
	return fmt.Sprintf("%s, completed=true, finishedAt set, deleted by TTL", s.SeenPhase)
}
