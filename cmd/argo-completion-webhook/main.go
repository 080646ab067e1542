// Command argo-completion-webhook serves the mutating admission webhook that completes Argo
// Workflows task results and workflows stuck by argo-workflows#12985. See the README.
package main

import (
	"flag"
	"fmt"
	"os"

	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager/signals"

	"github.com/argo-completion-webhook/argo-completion-webhook/webhook"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	fs := flag.NewFlagSet("argo-completion-webhook", flag.ExitOnError)
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
