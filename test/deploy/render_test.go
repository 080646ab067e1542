package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// The chart, relative to the repository, and the release the README installs it as: named so,
// in deploy/'s namespace, it names its objects as deploy/ does.
const (
	chartDir    = "deploy/chart/argo-completion-webhook"
	releaseName = "argo-completion-webhook"
)

// monitoringComponent is the kustomize component adding the ServiceMonitor and PrometheusRule.
const monitoringComponent = "deploy/components/monitoring"

// A source is one rendering of the install, as an operator makes it: deploy/ or an overlay built
// by kustomize (with components, if any), or the chart templated by helm with some values.
type source struct {
	// name says what is rendered; it names the subtests.
	name string
	// chart is true for the Helm chart, whose release namespace the operator creates and labels
	// before installing (README, Install), and whose objects follow its release.
	chart bool
	// namespace is the namespace the objects are installed in.
	namespace string
	// dirs are, for kustomize, the directory built and the components added; values are, for
	// the chart, its values files (ci/...) and --set pairs; release is its release name.
	dirs    []string
	values  []string
	release string
}

// kustomize is dir (relative to the repository) built by kustomize, with components added.
func kustomize(dir string, components ...string) source {
	name := "kustomize " + dir
	for _, c := range components {
		name += " + " + c
	}
	return source{name: name, namespace: deployNamespace, dirs: append([]string{dir}, components...)}
}

// chart is the chart templated as release argo-completion-webhook in deploy/'s namespace, with
// values: files of the chart's ci/ directory ("ci/audit-values.yaml") or --set pairs
// ("mode=audit").
func chart(values ...string) source {
	return chartAs(releaseName, deployNamespace, values...)
}

// chartAs is the chart templated as release in namespace, with values as for chart.
func chartAs(release, namespace string, values ...string) source {
	name := "helm"
	if release != releaseName || namespace != deployNamespace {
		name += fmt.Sprintf(" %s -n %s", release, namespace)
	}
	for _, v := range values {
		name += " " + v
	}
	return source{name: name, chart: true, namespace: namespace, release: release, values: values}
}

// The documented renderings, each validated like the others: the kustomize base, its overlays
// and its monitoring component; the chart's defaults and each values file of its ci/ directory
// (the files `make chart-lint` lints and templates; TestChartVariantsAreItsCIValues keeps the two
// lists equal).
var (
	kustomizeSources = []source{
		kustomize("deploy"),
		kustomize("deploy/overlays/audit"),
		kustomize("deploy/overlays/scoped"),
		kustomize("deploy", monitoringComponent),
	}
	chartSources = []source{
		chart(),
		chart("ci/audit-values.yaml"),
		chart("ci/scoped-values.yaml"),
		chart("ci/existing-issuer-values.yaml"),
		chart("ci/archive-values.yaml"),
		chart("ci/monitoring-values.yaml"),
	}
)

// allSources are every documented rendering.
func allSources() []source { return append(append([]source{}, kustomizeSources...), chartSources...) }

// render renders src and returns its objects.
func render(t *testing.T, src source) []*unstructured.Unstructured {
	t.Helper()
	out, err := renderOutput(t, src)
	require.NoError(t, err)
	return decodeManifests(t, src.name, out)
}

// renderOutput runs kustomize or helm for src and returns what it printed, or its error.
func renderOutput(t *testing.T, src source) ([]byte, error) {
	t.Helper()
	var cmd *exec.Cmd
	if src.chart {
		args := []string{"template", src.release, filepath.Join(root, chartDir), "--namespace", src.namespace}
		for _, v := range src.values {
			if strings.HasSuffix(v, ".yaml") {
				args = append(args, "--values", filepath.Join(root, chartDir, v))
			} else {
				args = append(args, "--set", v)
			}
		}
		cmd = exec.Command(toolBin("helm"), args...)
	} else {
		dir := filepath.Join(root, src.dirs[0])
		if components := src.dirs[1:]; len(components) > 0 {
			// A kustomization of the operator's own, as deploy/components/monitoring describes.
			dir = t.TempDir()
			k := "resources:\n  - " + relative(t, dir, src.dirs[0]) + "\ncomponents:\n"
			for _, c := range components {
				k += "  - " + relative(t, dir, c) + "\n"
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600))
		}
		cmd = exec.Command(toolBin("kustomize"), "build", dir)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", src.name, err, stderr.String())
	}
	return out.Bytes(), nil
}

// relative is the path from dir to path (relative to the repository), as a kustomization needs.
func relative(t *testing.T, dir, path string) string {
	t.Helper()
	rel, err := filepath.Rel(dir, filepath.Join(root, path))
	require.NoError(t, err)
	return rel
}

// decodeManifests decodes a YAML stream of objects, skipping empty documents.
func decodeManifests(t *testing.T, name string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "decoding the output of %s", name)
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}
