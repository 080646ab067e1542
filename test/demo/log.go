package main

import (
	"io"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// fileLogger writes the webhook's JSON logs to w.
func fileLogger(w io.Writer) logr.Logger {
	return zap.New(zap.WriteTo(w))
}
