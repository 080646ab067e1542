package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/argo-completion-webhook/argo-completion-webhook/internal/testcerts"
	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// binaryResult is what a run of the webhook binary measured: how long until /readyz answered OK
// (the pod cache synced and TLS serving), its RSS then, and the reviews it answered under load.
type binaryResult struct {
	Ready    time.Duration
	RSSKiB   int64 // VmRSS when /readyz first answered OK
	HWMKiB   int64 // VmHWM (peak RSS) after the load
	AfterKiB int64 // VmRSS after the load
	Reviews  int
	// Errors counts reviews that failed or were not answered as the pod's facts decide.
	Errors   int
	Patched  int
	P50, P99 time.Duration
	RPS      float64
	// LookupErrors is argo_completion_webhook_lookup_errors_total after the load: lookups that
	// failed (none, when every lookup is answered).
	LookupErrors float64
}

// runBinary starts the webhook binary against kubeconfig, logging to logPath, with extraEnv
// added to its environment (from which this run's own GC and feature settings are removed), waits
// for /readyz, reads its memory, then drives task-result CREATE reviews of random pods
// (0..pods-1) over TLS from clients keep-alive connections for load, and stops it.
func runBinary(ctx context.Context, bin, kubeconfig, dir, logPath string, extraEnv []string, pods, clients int, load time.Duration) (binaryResult, error) {
	var res binaryResult
	ca, err := testcerts.NewCA()
	if err != nil {
		return res, err
	}
	certDir := filepath.Join(dir, "certs")
	if err := ca.WriteServing(certDir, "127.0.0.1"); err != nil {
		return res, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	probe, err := harness.FreePort()
	if err != nil {
		return res, err
	}
	probes := "127.0.0.1:" + strconv.Itoa(probe)
	logFile, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--cert-dir", certDir, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--health-probe-bind-address", probes, "--metrics-bind-address", probes, "--shutdown-delay", "0s")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "GOGC" && k != "GOMEMLIMIT" && k != "GODEBUG" && !strings.HasPrefix(k, "KUBE_FEATURE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	pid := strconv.Itoa(cmd.Process.Pid)
	for {
		if harness.HTTPStatus("http://"+probes+"/readyz") == http.StatusOK {
			res.Ready = time.Since(start)
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return res, fmt.Errorf("the webhook exited before it was ready (%w): see %s", err, logFile.Name())
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if res.RSSKiB, _, err = memory(pid); err != nil {
		return res, err
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: clients}}
	// Reviews of random pods; a resource pod's is patched (rule A1), any other's is not, so a
	// review answered otherwise means its lookup did not find the pod's facts.
	type request struct {
		body      []byte
		wantPatch bool
	}
	requests := make([]request, 4096)
	for j := range requests {
		i := rand.IntN(pods)
		requests[j].wantPatch = resource(i)
		if requests[j].body, err = taskResultReview(j, nodeOf(i)); err != nil {
			return res, err
		}
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + webhook.TaskResultPath
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(load)
	loadStart := time.Now()
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			errs, patched := 0, 0
			for time.Now().Before(deadline) {
				r := requests[rand.IntN(len(requests))]
				t0 := time.Now()
				p, err := review(httpc, url, r.body)
				mine = append(mine, time.Since(t0))
				switch {
				case err != nil, p != r.wantPatch:
					errs++
				case p:
					patched++
				}
			}
			mu.Lock()
			all = append(all, mine...)
			res.Errors += errs
			res.Patched += patched
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(loadStart)
	slices.Sort(all)
	res.Reviews, res.P50, res.P99 = len(all), percentile(all, 0.50), percentile(all, 0.99)
	res.RPS = float64(len(all)) / elapsed.Seconds()
	if res.LookupErrors, err = harness.Scrape("http://"+probes+"/metrics", "argo_completion_webhook_lookup_errors_total"); err != nil {
		return res, err
	}
	res.AfterKiB, res.HWMKiB, err = memory(pid)
	return res, err
}

// taskResultReview is the AdmissionReview of the executor's ReportOutputs create for node n: a
// WorkflowTaskResult with outputs and report-outputs-completed "false" (the #12985 shape), which
// the webhook decides by looking up n's pod.
func taskResultReview(i int, n node) ([]byte, error) {
	return json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid":       fmt.Sprintf("scale-%d", i),
			"kind":      map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "WorkflowTaskResult"},
			"resource":  map[string]any{"group": "argoproj.io", "version": "v1alpha1", "resource": "workflowtaskresults"},
			"namespace": namespace, "name": n.id, "operation": "CREATE",
			"userInfo": map[string]any{"username": "system:serviceaccount:" + namespace + ":default"},
			"object": map[string]any{
				"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
				"metadata": map[string]any{
					"name": n.id, "namespace": namespace,
					"labels": map[string]any{rules.LabelWorkflow: n.workflow, rules.LabelReportOutputsCompleted: "false"},
					"ownerReferences": []any{map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
						"name": n.workflow, "uid": n.workflowUID}},
				},
				"outputs": map[string]any{"parameters": []any{map[string]any{"name": "result", "value": "42"}}},
			},
		},
	})
}

// review posts one AdmissionReview and reports whether the response carries a patch.
func review(c *http.Client, url string, body []byte) (bool, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	var r admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return false, err
	}
	if r.Response == nil || !r.Response.Allowed {
		return false, errors.New("not allowed")
	}
	return r.Response.Patch != nil, nil
}

// memory returns VmRSS and VmHWM, in KiB, of process pid ("self" for this one).
func memory(pid string) (rss, hwm int64, err error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("reading %s of %s: %w", key, pid, err)
		}
		if key == "VmRSS" {
			rss = kib
		} else {
			hwm = kib
		}
	}
	return rss, hwm, sc.Err()
}
