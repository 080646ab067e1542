//go:build tools

// Package tools pins the kustomize main package so `go build` can build it here.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
