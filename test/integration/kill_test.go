package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// The binary is killed with SIGKILL while executors write, then restarted: with failurePolicy
// Ignore no write fails while it is down (those go through unpatched, for the repair to find),
// and writes are patched again once it is back.
func TestKill9UnderLoadNeverFailsAWrite(t *testing.T) {
	ctx := context.Background()
	const ns = "kill"
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	bin := buildBinary(t)
	dir := t.TempDir()
	ca, err := testcerts.NewCA()
	require.NoError(t, err)
	certDir := filepath.Join(dir, "certs")
	require.NoError(t, ca.WriteServing(certDir, "127.0.0.1"))
	port, err := harness.FreePort()
	require.NoError(t, err)
	probe, err := harness.FreePort()
	require.NoError(t, err)
	cmd, _ := startBinary(t, bin, certDir, port, probe)
	hook := &harness.Webhook{URL: "https://127.0.0.1:" + strconv.Itoa(port), Metrics: "http://127.0.0.1:" + strconv.Itoa(probe) + "/metrics", CAPEM: ca.PEM}
	require.NoError(t, harness.Register(ctx, admin, hook, ns))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })

	// phase: 0 up, 1 killed, 2 restarted
	var phase atomic.Int32
	var writes, failed [3]atomic.Int64
	var patched [3]atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	executor, _ := clientAs(t, executorSA, "")
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := newNode(t, fmt.Sprintf("kill-%d", i), false)
			createPod(t, ns, n)
			p := phase.Load()
			tr := taskResult(ns, n, "false", resourceOutputs("x"))
			err := executor.Create(ctx, tr)
			if phase.Load() != p {
				// Straddles the kill or the restart: it must not fail; patched or not is chance.
				if err != nil {
					failed[1].Add(1)
				}
				continue
			}
			writes[p].Add(1)
			if err != nil {
				failed[p].Add(1)
			} else if tr.GetLabels()[rules.LabelReportOutputsCompleted] == "true" {
				patched[p].Add(1)
			}
		}
	}()
	time.Sleep(2 * time.Second)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	phase.Store(1)
	time.Sleep(3 * time.Second)
	startBinary(t, bin, certDir, port, probe)
	time.Sleep(time.Second) // the API server reconnects
	phase.Store(2)
	time.Sleep(2 * time.Second)
	close(stop)
	<-done

	fmt.Printf("kill -9: before %d writes (%d patched), while down %d writes (%d failed), after restart %d writes (%d patched)\n",
		writes[0].Load(), patched[0].Load(), writes[1].Load(), failed[1].Load(), writes[2].Load(), patched[2].Load())
	for p := range 3 {
		assert.Zero(t, failed[p].Load(), "no write failed (phase %d)", p)
		assert.Positive(t, writes[p].Load())
	}
	assert.Equal(t, writes[0].Load(), patched[0].Load(), "all patched before the kill")
	assert.Equal(t, writes[2].Load(), patched[2].Load(), "all patched after the restart")
}
