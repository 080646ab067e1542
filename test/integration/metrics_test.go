package integration

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

// scrape returns the value of one series from a /metrics URL (0 when not yet exposed).
func scrape(t *testing.T, url, series string) float64 {
	t.Helper()
	v, err := harness.Scrape(url, series)
	require.NoError(t, err)
	return v
}
