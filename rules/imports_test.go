package rules

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The module's packages, as go list names them.
const (
	modulePath     = "github.com/argo-completion-webhook/argo-completion-webhook"
	rulesPackage   = modulePath + "/rules"
	repairPackage  = modulePath + "/repair"
	webhookPackage = modulePath + "/webhook"
)

// TestPackagesImportRulesAndNotEachOther keeps one home for the rules: repair and webhook both
// import this package, repair never imports webhook, and this package imports neither, directly
// or through another package, tests included. It asks `go list -deps -test`, the go command
// that runs this test.
func TestPackagesImportRulesAndNotEachOther(t *testing.T) {
	cases := map[string]struct {
		pkg       string
		forbidden []string
	}{
		"rules imports neither webhook nor repair": {pkg: rulesPackage, forbidden: []string{webhookPackage, repairPackage}},
		"repair imports rules, not webhook":        {pkg: repairPackage, forbidden: []string{webhookPackage}},
		"webhook imports rules, not repair":        {pkg: webhookPackage, forbidden: []string{repairPackage}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			deps := goListDeps(t, tc.pkg)
			for _, f := range tc.forbidden {
				assert.NotContains(t, deps, f, "%s depends on %s", tc.pkg, f)
			}
			if tc.pkg != rulesPackage {
				assert.Contains(t, deps, rulesPackage, "%s uses the rules", tc.pkg)
			}
		})
	}
}

// goListDeps returns the import paths pkg and its tests depend on, test variants folded into
// their package ("p [q.test]" reads as p).
func goListDeps(t *testing.T, pkg string) map[string]bool {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to list imports; go test puts its own on PATH")
	cmd := exec.Command(goBin, "list", "-deps", "-test", "-f", "{{.ImportPath}}", pkg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps -test %s: %s", pkg, stderr.String())
	deps := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			deps[f[0]] = true
		}
	}
	require.Contains(t, deps, pkg, "go list named the package itself")
	return deps
}
