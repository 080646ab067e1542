// Package controlplane starts the test control plane (a real kube-apiserver v1.37.2 and etcd
// v3.6, built by `make tools` into bin/k8s/<version>/) with Argo's CRDs installed, for the
// integration and end-to-end suites. Both servers listen on 127.0.0.1 only.
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

// KubernetesVersion is the version of the kube-apiserver the tools module builds.
const KubernetesVersion = "1.37.2"

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
// else bin/k8s/<version>/ in the repository. It fails with the make target when they are missing.
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s", KubernetesVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if !fileExists(filepath.Join(dir, b)) {
			return "", fmt.Errorf("%s not found in %s: run `make tools` to build the test control plane (about 5 minutes the first time)", b, dir)
		}
	}
	return dir, nil
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
