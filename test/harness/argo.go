package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/argo-completion-webhook/argo-completion-webhook/test/controlplane"
)

// ArgoVersions are the workflow-controller versions the tool modules build: v3.5.4 is the
// controller of the #12985 report (phase Succeeded, completed "false"); v3.5.5 keeps such a
// workflow Running and counts a node without a completion entry incomplete (R10); v3.7.18 and
// v4.0.5 track it per node (taskResultSynced), and v4.0.5's timeout fallback is inert (R6).
var ArgoVersions = []string{"v3.5.4", "v3.5.5", "v3.7.18", "v4.0.5"}

// ControllerBinary returns the path of the built workflow-controller for version, or an error
// naming the make target that builds it.
func ControllerBinary(version string) (string, error) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "argo", version, "workflow-controller")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%s not found: run `make argo-tools` to build Argo's workflow-controller %s (about 3 minutes each the first time)", bin, version)
	}
	return bin, nil
}

// controllerConfig is the workflow-controller-configmap: metrics and telemetry servers off, so the
// controller opens no listener beyond its health port (held, see StartController).
const controllerConfig = `metricsConfig:
  enabled: false
telemetryConfig:
  enabled: false
`

// Controller is Argo's real workflow-controller running as a child process.
type Controller struct {
	// Version is the Argo version.
	Version string
	// LogPath is the controller's log file.
	LogPath string
	cmd     *exec.Cmd
	hold    net.Listener
	exited  chan error
}

// StartController starts the workflow-controller of version for namespace, namespaced, with
// leader election off. Its health listener binds :6060 on every interface and no flag moves it,
// so this holds 127.0.0.1:6060 first: the controller's bind fails, it logs that and carries on.
func StartController(ctx context.Context, admin client.Client, version, kubeconfig, namespace, logDir string) (*Controller, error) {
	bin, err := ControllerBinary(version)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "workflow-controller-configmap", Namespace: namespace},
		Data:       map[string]string{"config": controllerConfig},
	}
	if err := admin.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the controller's configmap: %w", err)
	}
	hold, err := net.Listen("tcp", "127.0.0.1:6060")
	if err != nil {
		return nil, fmt.Errorf("holding 127.0.0.1:6060 so the controller's health listener stays off the network: %w", err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		hold.Close()
		return nil, err
	}
	logPath := filepath.Join(logDir, "workflow-controller-"+version+"-"+namespace+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		hold.Close()
		return nil, err
	}
	cmd := exec.Command(bin,
		"--kubeconfig", kubeconfig,
		"--namespaced", "--managed-namespace", namespace, "--namespace", namespace,
		"--executor-image", "quay.io/argoproj/argoexec:"+version,
		"--loglevel", "info",
		"--workflow-workers", "8", "--pod-cleanup-workers", "2", "--workflow-ttl-workers", "2")
	// DEFAULT_REQUEUE_TIME (Argo default 10s) only shortens how long the test waits for requeues.
	cmd.Env = append(os.Environ(), "LEADER_ELECTION_DISABLE=true", "DEFAULT_REQUEUE_TIME=2s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group (so Stop can kill it whole), and killed if this process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		hold.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	c := &Controller{Version: version, LogPath: logPath, cmd: cmd, hold: hold, exited: make(chan error, 1)}
	go func() {
		c.exited <- cmd.Wait()
		logFile.Close()
	}()
	return c, nil
}

// Stop sends SIGTERM to the controller (by PID), kills it after 10 s, and releases the port.
func (c *Controller) Stop() {
	defer c.hold.Close()
	if c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
}

// Exited reports whether the controller process has exited.
func (c *Controller) Exited() bool {
	select {
	case err := <-c.exited:
		c.exited <- err
		return true
	default:
		return false
	}
}
