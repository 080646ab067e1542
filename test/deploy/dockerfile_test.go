package deploy

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dockerfile returns the COPY sources of the build stage and the RUN line that builds the binary.
func dockerfile(t *testing.T) (copies []string, build string) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) > 2 && fields[0] == "COPY" && !strings.HasPrefix(fields[1], "--from"):
			copies = append(copies, fields[1:len(fields)-1]...)
		case len(fields) > 1 && fields[0] == "RUN" && strings.Contains(sc.Text(), "go build"):
			build = strings.TrimPrefix(sc.Text(), "RUN ")
		}
	}
	require.NoError(t, sc.Err())
	return copies, build
}

// No Docker engine runs here, so this runs the Dockerfile's own build command on a copy of
// exactly what the Dockerfile copies, and checks the result is a static binary that starts.
func TestDockerfileBuildsAStaticBinaryFromOnlyWhatItCopies(t *testing.T) {
	copies, build := dockerfile(t)
	sort.Strings(copies)
	assert.Equal(t, []string{"cmd/", "go.mod", "go.sum", "repair/", "rules/", "webhook/"}, copies)
	require.Contains(t, build, "CGO_ENABLED=0")
	require.Contains(t, build, "-trimpath")
	require.Contains(t, build, "-X main.version=${VERSION}")

	// Every package of this repository the binary needs lies in a copied directory.
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/argo-completion-webhook")
	list.Dir = root
	out, err := list.Output()
	require.NoError(t, err)
	const module = "github.com/argo-completion-webhook/argo-completion-webhook/"
	for _, p := range strings.Fields(string(out)) {
		if rest, ok := strings.CutPrefix(p, module); ok {
			top, _, _ := strings.Cut(rest, "/")
			assert.Contains(t, copies, top+"/", "the binary needs %s, which the Dockerfile does not copy", p)
		}
	}

	// Build from a context holding only the copied paths, with the Dockerfile's command.
	ctxDir := t.TempDir()
	for _, c := range copies {
		require.NoError(t, exec.Command("cp", "-r", filepath.Join(root, c), filepath.Join(ctxDir, c)).Run())
	}
	bin := filepath.Join(t.TempDir(), "argo-completion-webhook")
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/argo-completion-webhook", bin))
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-test")
	combined, err := cmd.CombinedOutput()
	require.NoError(t, err, "the Dockerfile's build command: %s", combined)

	exe, err := elf.Open(bin)
	require.NoError(t, err)
	defer exe.Close()
	for _, p := range exe.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "static: no dynamic loader")
	}
	libs, _ := exe.ImportedLibraries()
	assert.Empty(t, libs, "static: no shared libraries")

	help, err := exec.Command(bin, "--help").CombinedOutput()
	require.NoError(t, err, "--help exits 0: %s", help)
	assert.Contains(t, string(help), "-cert-dir")
	version, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	assert.Equal(t, "v0.0.0-test\n", string(version), "the version is injected with -ldflags")
}
