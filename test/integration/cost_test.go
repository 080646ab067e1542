package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The latency the webhook adds at the API server to an executor's outputs write (the #12985
// create), measured with the webhook registered and not, interleaved in rounds so drift in the
// machine's load hits both sides alike.
func TestAPIServerLatencyWithAndWithoutTheWebhook(t *testing.T) {
	ctx := context.Background()
	const ns, rounds, perRound = "cost", 6, 40
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	t.Cleanup(func() { require.NoError(t, registerEnforce(ctx)) })
	executor, _ := clientAs(t, executorSA, "")
	var with, without []time.Duration
	i := 0
	for r := range rounds {
		registered := r%2 == 0
		if registered {
			require.NoError(t, registerEnforce(ctx))
		} else {
			require.NoError(t, unregister(ctx))
		}
		for range perRound {
			i++
			n := newNode(t, fmt.Sprintf("cost-%d", i), false)
			createPod(t, ns, n)
			start := time.Now()
			require.NoError(t, executor.Create(ctx, taskResult(ns, n, "false", resourceOutputs("x"))))
			took := time.Since(start)
			v, _ := persistedLabel(t, ns, n)
			if registered {
				require.Equal(t, "true", v, "patched while registered")
				with = append(with, took)
			} else {
				require.Equal(t, "false", v, "not called while unregistered")
				without = append(without, took)
			}
		}
	}
	p50 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	p99 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)*99/100] }
	fmt.Printf("api-server cost: task-result create p50 %s with the webhook, %s without (added %s, ratio %.2f); p99 %s vs %s; %d writes each\n",
		p50(with).Round(10*time.Microsecond), p50(without).Round(10*time.Microsecond), (p50(with) - p50(without)).Round(10*time.Microsecond),
		float64(p50(with))/float64(p50(without)), p99(with).Round(10*time.Microsecond), p99(without).Round(10*time.Microsecond), len(with))
	assert.Less(t, p50(with)-p50(without), 20*time.Millisecond, "the webhook adds little to a write")
}
