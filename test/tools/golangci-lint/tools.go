//go:build tools

// Package tools pins the golangci-lint main package so `go build` can build it here.
package tools

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
