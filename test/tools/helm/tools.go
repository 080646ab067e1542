//go:build tools

// Package tools pins the helm main package so `go build` can build it here.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
