package webhook

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadDuration is how long each size is driven: short in `make test`, LOAD_DURATION for
// `make load` and `make soak`.
func loadDuration(t *testing.T) time.Duration {
	if v := os.Getenv("LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "LOAD_DURATION")
		return d
	}
	return 2 * time.Second
}

// loadResult is what one load run measured.
type loadResult struct {
	requests, errors int64
	latencies        []time.Duration // sorted
	elapsed          time.Duration
}

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

// rate is the requests answered per second of driving.
func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// plus is r and o taken as one run: counts and driving time added, latencies merged.
func (r loadResult) plus(o loadResult) loadResult {
	sum := loadResult{requests: r.requests + o.requests, errors: r.errors + o.errors, elapsed: r.elapsed + o.elapsed}
	sum.latencies = append(slices.Clone(r.latencies), o.latencies...)
	slices.Sort(sum.latencies)
	return sum
}

// drive sends body to url from clients concurrent keep-alive connections for d; any status other
// than 200 or a response without an allowing review counts as an error.
func drive(client *http.Client, url string, body []byte, clients int, d time.Duration) loadResult {
	var res loadResult
	var mu sync.Mutex
	var requests, errors atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var local []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					errors.Add(1)
					continue
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				local = append(local, time.Since(t0))
				requests.Add(1)
				if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
					errors.Add(1)
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests, res.errors = requests.Load(), errors.Load()
	slices.Sort(res.latencies)
	return res
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rssBytes reads this process's resident set size (Linux).
func rssBytes(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	fields := strings.Fields(string(data))
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	require.NoError(t, err)
	return pages * int64(os.Getpagesize())
}

// loadBound is what `make load` asserts of one request size: a p99 within about 3× and a rate of
// at least a third of what README "Performance" quotes (from `LOAD_DURATION=5s make load` on this
// project's 2-core machine), so a regression fails and a shared machine's noise (runs here vary
// by up to 2×) does not; and never a rate under a goal the README marks met.
type loadBound struct {
	p99     time.Duration
	minRate float64
}

var loadBounds = map[string]loadBound{
	"taskresult-5KB":             {p99: 16 * time.Millisecond, minRate: 5000}, // quoted 5.4 ms, 10,268/s; goal ≥ 5,000/s (met)
	"workflow-5KB":               {p99: 23 * time.Millisecond, minRate: 2400}, // quoted 7.5 ms, 7,337/s
	"workflow-125KB":             {p99: 75 * time.Millisecond, minRate: 550},  // quoted 24.5 ms, 1,658/s
	"workflow-1.1MB":             {p99: 725 * time.Millisecond, minRate: 100}, // quoted 241 ms, 125/s; goal ≥ 100/s (met)
	"workflow-1.1MB-labels-only": {p99: 525 * time.Millisecond, minRate: 53},  // quoted 175 ms, 159/s
}

// measuring says the run is `make load` or `make soak` (LOAD_DURATION set, no race detector):
// only then are the figures' bounds asserted. In `make unit` (race detector on) and in a plain
// `go test ./...` (beside other packages' tests, for 2 s) they would time the detector or the
// neighbours, so those runs check errors, counts and the 1 s bound only.
func measuring() bool { return !raceDetector && os.Getenv("LOAD_DURATION") != "" }

// TestLoadOverTLS drives the real server (serve: controller-runtime's webhook server, TLS,
// certwatcher, metrics) over TLS with concurrent keep-alive clients, next to the typical handler
// behind Go's TLS server, for each request size, and prints p50/p90/p99 and requests/s. It
// asserts zero errors; without the race detector, a p99 far under the webhook's 2 s
// timeoutSeconds; and under `make load`, each size's loadBounds. Server and load generator share
// this process (and its 2 cores).
func TestLoadOverTLS(t *testing.T) {
	d := loadDuration(t)
	s := startTLSServer(t, func(o *Options) { o.Log = logr.Discard() })
	typical := httptest.NewUnstartedServer(typicalHandler())
	typical.EnableHTTP2 = false
	typical.StartTLS()
	defer typical.Close()
	clientFor := func(cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64}}
	}
	ours := clientFor(&tls.Config{RootCAs: s.caPool})
	typ := typical.Client()
	typ.Transport.(*http.Transport).MaxIdleConnsPerHost = 64

	fmt.Printf("\nload over TLS, %s per run, 16 keep-alive clients (server and clients share 2 cores):\n", d)
	switch {
	case raceDetector:
		fmt.Println("race detector on: races, errors and counts are checked, latency and rate are not (they would time the detector); `make load` runs without it")
	case !measuring():
		fmt.Println("LOAD_DURATION unset: errors, counts and p99 < 1s are checked; `make load` also checks each size's p99 and rate against the README's figures")
	}
	fmt.Printf("%-28s %-8s %9s %9s %9s %10s %7s\n", "request", "handler", "p50", "p90", "p99", "req/s", "errors")
	for _, bc := range benchCases() {
		if bc.name == "workflow-1.1MB-compressed" {
			continue
		}
		for _, who := range []string{"ours", "typical"} {
			client, url := ours, s.url+bc.path
			if who == "typical" {
				client, url = typ, typical.URL+bc.path
			}
			r := drive(client, url, bc.body, 16, d)
			fmt.Printf("%-28s %-8s %9s %9s %9s %10.0f %7d\n", bc.name, who,
				r.quantile(0.5).Round(time.Microsecond), r.quantile(0.9).Round(time.Microsecond), r.quantile(0.99).Round(time.Microsecond),
				r.rate(), r.errors)
			if who != "ours" {
				continue
			}
			assert.Zero(t, r.errors, bc.name)
			assert.Positive(t, r.requests, bc.name)
			if !raceDetector {
				assert.Less(t, r.quantile(0.99), time.Second, "%s: p99 under half the webhook's timeoutSeconds (2s), with 16 clients on 2 shared cores", bc.name)
			}
			if measuring() {
				b, ok := loadBounds[bc.name]
				require.True(t, ok, "%s has a bound in loadBounds", bc.name)
				assert.LessOrEqual(t, r.quantile(0.99), b.p99, "%s: p99 within about 3x of the README's figure", bc.name)
				assert.GreaterOrEqual(t, r.rate(), b.minRate, "%s: requests/s at least a third of the README's figure, and the goal where one is met", bc.name)
			}
		}
	}
}

// The soak's bounds (`make soak`), against README "Performance": task results p99 5.6 ms and
// over 10,000/s (the goal, ≥ 5,000/s, is met); the 125 KB Workflow reviews against `make
// load`'s figures for them with 16 clients (24.5 ms, 1,658/s; the soak drives them with 4); and
// the RSS goal, under 64 MiB (load generator included).
const (
	soakTaskResultP99  = 17 * time.Millisecond
	soakTaskResultRate = 5000
	soakWorkflowP99    = 75 * time.Millisecond
	soakWorkflowRate   = 550
	soakRSSLimit       = 64 << 20
)

// TestSoakOverTLS drives task-result reviews (16 clients, for the load duration) and 125 KB
// Workflow reviews (4 clients, for half of it) in turn: one round to warm up (pools, TLS
// sessions, the heap at its working size), then 3 rounds measured. It checks both paths' errors
// and counts, and that the resident set does not grow by more than 20% over the measured rounds
// (no leak in the pooled buffers or the handlers); under `make soak` also both paths' p99 and
// rate, and RSS under the goal. RSS is this process's, load generator included. `make soak` runs
// this test alone with LOAD_DURATION=20s (a 30 s warm-up, then 90 s measured). The warm-up's
// requests are in none of the figures.
func TestSoakOverTLS(t *testing.T) {
	d := loadDuration(t)
	s := startTLSServer(t, func(o *Options) { o.Log = logr.Discard() })
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool}, MaxIdleConnsPerHost: 64}}
	var trBody, wfBody []byte
	for _, bc := range benchCases() {
		switch bc.name {
		case "taskresult-5KB":
			trBody = bc.body
		case "workflow-125KB":
			wfBody = bc.body
		}
	}
	round := func() (tr, wf loadResult) {
		return drive(client, s.url+TaskResultPath, trBody, 16, d), drive(client, s.url+WorkflowPath, wfBody, 4, d/2)
	}
	round()              // the warm-up, left out of every figure
	debug.FreeOSMemory() // collect and return freed pages, so RSS counts what is retained
	rssWarm := rssBytes(t)
	var tr, wf loadResult
	for range 3 {
		rtr, rwf := round()
		tr, wf = tr.plus(rtr), wf.plus(rwf)
	}
	debug.FreeOSMemory()
	rssEnd := rssBytes(t)
	// The load generator keeps every measured request's latency (8 bytes each, 12 MiB at
	// 25,000/s over 60 s); growth is judged without them, so it is the server's and the
	// connections', not the records of the measurement.
	records := int64(cap(tr.latencies)+cap(wf.latencies)) * 8 // a time.Duration is an int64
	for _, p := range []struct {
		name string
		r    loadResult
	}{{"task results", tr}, {"workflow-125KB", wf}} {
		fmt.Printf("soak: %-14s %8d requests over TLS in %s after the warm-up, %d errors, p99 %s, %.0f req/s\n",
			p.name, p.r.requests, p.r.elapsed.Round(time.Second), p.r.errors, p.r.quantile(0.99).Round(time.Microsecond), p.r.rate())
	}
	fmt.Printf("soak: RSS after warm-up %.1f MiB, at the end %.1f MiB, %.1f MiB without the %.1f MiB of latency records (%+.1f%%)\n",
		mib(rssWarm), mib(rssEnd), mib(rssEnd-records), mib(records), 100*(float64(rssEnd-records)/float64(rssWarm)-1))

	assert.Zero(t, tr.errors, "task-result errors")
	assert.Zero(t, wf.errors, "workflow errors")
	assert.Positive(t, tr.requests, "task-result requests")
	assert.Positive(t, wf.requests, "workflow requests")
	assert.LessOrEqual(t, float64(rssEnd-records), 1.2*float64(rssWarm), "RSS, less the latency records, within 20%% of its size after warm-up")
	if !raceDetector {
		assert.Less(t, tr.quantile(0.99), 500*time.Millisecond, "task-result p99")
		assert.Less(t, wf.quantile(0.99), 500*time.Millisecond, "workflow p99")
	}
	if measuring() {
		assert.LessOrEqual(t, tr.quantile(0.99), soakTaskResultP99, "task-result p99 within about 3x of the README's figure")
		assert.GreaterOrEqual(t, tr.rate(), float64(soakTaskResultRate), "task-result reviews/s: the README's goal")
		assert.LessOrEqual(t, wf.quantile(0.99), soakWorkflowP99, "workflow p99 within about 3x of the README's figure")
		assert.GreaterOrEqual(t, wf.rate(), float64(soakWorkflowRate), "workflow reviews/s at least a third of the README's figure")
		assert.Less(t, rssEnd, int64(soakRSSLimit), "RSS (latency records and load generator included) under the README's goal of 64 MiB")
	}
}
