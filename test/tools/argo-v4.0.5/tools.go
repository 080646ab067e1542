//go:build tools

// Package tools pins Argo's workflow-controller main package so `go build` can build it here.
package tools

import _ "github.com/argoproj/argo-workflows/v4/cmd/workflow-controller"
