// Command argo-completion-webhook serves the mutating admission webhook that completes Argo
// Workflows task results and workflows stuck by argo-workflows#12985, and diagnoses and repairs
// workflows already stuck (`argo-completion-webhook repair`). See the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"

	"github.com/argo-completion-webhook/argo-completion-webhook/repair"
	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "repair" {
		os.Exit(runRepair(os.Args[2:]))
	}
	fs := flag.NewFlagSet("argo-completion-webhook", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  argo-completion-webhook [flags]          serve the webhook\n  argo-completion-webhook repair [flags]   diagnose workflows already stuck and repair what is safe (see repair --help)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var opts webhook.Options
	opts.BindFlags(fs)
	zopts := zap.Options{}
	zopts.BindFlags(fs)
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version)
		return
	}

	log := zap.New(zap.UseFlagOptions(&zopts))
	logf.SetLogger(log)
	opts.Log = log.WithName("webhook")
	log.Info("starting argo-completion-webhook", "version", version)
	if err := webhook.Run(signals.SetupSignalHandler(), opts); err != nil {
		log.Error(err, "exiting")
		os.Exit(1)
	}
}

// runRepair runs the repair command and returns its exit code: 0 when the scan completed and
// every write succeeded, 1 otherwise, 2 for bad flags.
func runRepair(args []string) int {
	fs := flag.NewFlagSet("argo-completion-webhook repair", flag.ContinueOnError)
	var opts repair.Options
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := repair.Run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "repair:", err)
		return 1
	}
	return 0
}
