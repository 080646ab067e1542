// Package deploy validates deploy/ on a real kube-apiserver v1.37.2 with Argo's and cert-manager's
// CRDs installed: the kustomize output is accepted by server-side dry-run, the RBAC is exactly
// enough for the webhook and the repair, in the base and in each overlay (the audit overlay's
// repair only reports and cannot patch; the scoped overlay's reads and patches only in its
// namespaces), and cert-manager's certificate hand-off (Secret files, CA injection, rotation)
// works with the real API server calling the webhook.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
	"github.com/argo-completion-webhook/argo-completion-webhook/test/harness"
)

var (
	env      *envtest.Environment
	adminCfg *rest.Config
	admin    client.Client
	root     string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy suite setup failed:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	logf.SetLogger(logr.Discard())
	var err error
	if root, err = controlplane.RepoRoot(); err != nil {
		return 0, err
	}
	if _, err := os.Stat(kustomizeBin()); err != nil {
		return 0, fmt.Errorf("%s not found: run `make kustomize` (the deploy suite renders deploy/ with it)", kustomizeBin())
	}
	crds, err := controlplane.CertManagerCRDDir()
	if err != nil {
		return 0, err
	}
	if env, adminCfg, err = controlplane.StartEnv(crds); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	if admin, err = client.New(adminCfg, client.Options{Scheme: harness.Scheme()}); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

func kustomizeBin() string { return filepath.Join(root, "bin", "kustomize") }

// render runs kustomize on dir (relative to the repository) and returns the objects.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(kustomizeBin(), "build", filepath.Join(root, dir))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build %s: %v: %s", dir, err, stderr.String())
	}
	dec := yaml.NewYAMLOrJSONDecoder(&out, 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding kustomize output of %s: %v", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}
