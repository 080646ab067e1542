package integration

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// scrape returns the value of one series (name{labels} exactly as exposed) from a /metrics URL,
// or 0 when the series has not been exposed yet.
func scrape(t *testing.T, url, series string) float64 {
	t.Helper()
	v, err := scrapeValue(url, series)
	require.NoError(t, err)
	return v
}

func scrapeValue(url, series string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, sc.Err()
}
