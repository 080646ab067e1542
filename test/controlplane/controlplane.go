// Package controlplane starts the test control plane (a real kube-apiserver and etcd v3.6, built
// by `make tools` into bin/k8s/<version>/) with Argo's CRDs installed, for the integration and
// end-to-end suites. Both servers listen on 127.0.0.1 only. The kube-apiserver is v1.37.2 unless
// K8S_VERSION names another supported version (1.30.14, the minimum: `make integration-k8s-min`).
package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// DefaultKubernetesVersion is the kube-apiserver the suites run against unless K8S_VERSION says
// otherwise; test/tools/kube-apiserver builds it.
const DefaultKubernetesVersion = "1.37.2"

// MinKubernetesVersion is the oldest kube-apiserver the suites run against, the minimum supported
// version: the first release with admission matchConditions GA (beta and on by default from 1.28;
// deploy/ relies on them). test/tools/kube-apiserver-1.30.14 builds it.
const MinKubernetesVersion = "1.30.14"

// toolTargets maps each kube-apiserver version a tool module builds to the make target that
// builds it into bin/k8s/<version>/.
var toolTargets = map[string]string{
	DefaultKubernetesVersion: "make tools",
	MinKubernetesVersion:     "make tools-k8s-min",
}

// KubernetesVersion returns the kube-apiserver version the suites run against: $K8S_VERSION when
// set (as `make … K8S_VERSION=1.30.14` sets it), else DefaultKubernetesVersion. It is not checked
// against the binary, which is built from modules and reports no release version.
func KubernetesVersion() string {
	if v := os.Getenv("K8S_VERSION"); v != "" {
		return v
	}
	return DefaultKubernetesVersion
}

// ArgoVersion is the Argo release whose CRDs the suites install (pinned in the tool module
// test/tools/argo-v3.5.4).
const ArgoVersion = "v3.5.4"

// RepoRoot returns the repository root: the nearest parent directory with a Makefile and go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "Makefile")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no repository root above the working directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Assets returns the directory holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when set,
// else bin/k8s/<KubernetesVersion()>/ in the repository. It fails with the make target that builds
// them when they are missing, and when no tool module builds the version asked for.
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		if err := checkAssets(dir, "put kube-apiserver and etcd there, or unset KUBEBUILDER_ASSETS to use bin/k8s/"); err != nil {
			return "", err
		}
		return dir, nil
	}
	version := KubernetesVersion()
	target, ok := toolTargets[version]
	if !ok {
		return "", fmt.Errorf("K8S_VERSION=%s: no tool module builds that kube-apiserver; the suites run against %s (default) and %s (minimum, `make integration-k8s-min`)", version, DefaultKubernetesVersion, MinKubernetesVersion)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bin", "k8s", version)
	if err := checkAssets(dir, fmt.Sprintf("run `%s` to build the kube-apiserver %s test control plane (about 4-9 minutes the first time)", target, version)); err != nil {
		return "", err
	}
	return dir, nil
}

// checkAssets fails with hint when dir lacks kube-apiserver or etcd.
func checkAssets(dir, hint string) error {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if !fileExists(filepath.Join(dir, b)) {
			return fmt.Errorf("%s not found in %s: %s", b, dir, hint)
		}
	}
	return nil
}

// ArgoModuleDir returns the directory of the pinned github.com/argoproj/argo-workflows/v3 module
// in the module cache, downloading it through the Go module proxy if needed.
func ArgoModuleDir(version string) (string, error) {
	return ModuleDir("argo-"+version, "github.com/argoproj/argo-workflows/v3")
}

// CertManagerCRDDir returns deploy/crds of the cert-manager module pinned in test/tools/cert-manager.
func CertManagerCRDDir() (string, error) {
	dir, err := ModuleDir("cert-manager", "github.com/cert-manager/cert-manager")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "deploy", "crds"), nil
}

// ModuleDir returns the module-cache directory of module as pinned by the tool module
// test/tools/<tool>, downloading it through the Go module proxy if needed.
func ModuleDir(tool, module string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = filepath.Join(root, "test", "tools", tool)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go mod download %s in %s: %w: %s", module, cmd.Dir, err, stderr.String())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil {
		return "", fmt.Errorf("reading go mod download output: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", module, mod.Error)
	}
	return mod.Dir, nil
}

// ArgoCRDPaths returns Argo's minimal CRD files for Workflows and WorkflowTaskResults (and
// WorkflowTaskSets and WorkflowArtifactGCTasks, which the real controller watches).
func ArgoCRDPaths(version string) ([]string, error) {
	dir, err := ArgoModuleDir(version)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "manifests", "base", "crds", "minimal")
	var paths []string
	for _, f := range []string{"argoproj.io_workflows.yaml", "argoproj.io_workflowtaskresults.yaml",
		"argoproj.io_workflowtasksets.yaml", "argoproj.io_workflowartifactgctasks.yaml",
		"argoproj.io_workflowtemplates.yaml", "argoproj.io_clusterworkflowtemplates.yaml",
		"argoproj.io_cronworkflows.yaml"} {
		paths = append(paths, filepath.Join(base, f))
	}
	return paths, nil
}

// Start starts the control plane with Argo's CRDs and stops it when the test ends.
func Start(t testing.TB) (*envtest.Environment, *rest.Config) {
	t.Helper()
	env, cfg, err := StartEnv()
	if err != nil {
		t.Fatalf("starting the test control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the test control plane: %v", err)
		}
	})
	return env, cfg
}

// StartEnv starts the control plane with Argo's CRDs and any extra CRD files or directories;
// the caller stops it.
func StartEnv(extraCRDs ...string) (*envtest.Environment, *rest.Config, error) {
	assets, err := Assets()
	if err != nil {
		return nil, nil, err
	}
	crds, err := ArgoCRDPaths(ArgoVersion)
	if err != nil {
		return nil, nil, err
	}
	crds = append(crds, extraCRDs...)
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest (assets %s): %w", assets, err)
	}
	return env, cfg, nil
}
