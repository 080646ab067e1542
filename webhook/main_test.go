package webhook

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// controller-runtime's own components (certwatcher, the webhook server) log through its
	// global logger; the tests' loggers are passed explicitly.
	logf.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
