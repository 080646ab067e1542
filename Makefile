# argo-completion-webhook. Run `make help` for the targets.
.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash

# The test control plane's kube-apiserver: test/tools/kube-apiserver builds the default,
# test/tools/kube-apiserver-<version> each older one. K8S_MIN_VERSION is the minimum supported
# (matchConditions GA). Exported so the suites (test/controlplane) start the version built here.
K8S_DEFAULT_VERSION := 1.37.2
K8S_MIN_VERSION     := 1.30.14
K8S_VERSION  ?= $(K8S_DEFAULT_VERSION)
export K8S_VERSION
ARGO_VERSION ?= v3.5.4
# The Argo controllers the e2e suite runs against (E2E_ARGO_VERSIONS): every one by default;
# see e2e and e2e-matrix.
ARGO_VERSIONS ?= v3.5.4 v3.5.5 v3.7.18 v4.0.5
comma := ,
space := $(subst ,, )
BIN          := $(CURDIR)/bin
K8S_BIN      := $(BIN)/k8s/$(K8S_VERSION)
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
GO_TEST_FLAGS ?=
KUBECONFIG   ?= $(HOME)/.kube/config

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z0-9_.\/-]+:.*?##/ { printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: demo
demo: tools $(BIN)/argo/v3.5.4/workflow-controller ## Show #12985 and the fix: local control plane, Argo v3.5.4, with and without the webhook.
	go run ./test/demo

.PHONY: build
build: ## Build the webhook binary into bin/ (static, version from git).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/argo-completion-webhook ./cmd/argo-completion-webhook

.PHONY: certs
certs: ## Generate a throwaway CA and serving certificate into certs/ (git-ignored).
	go run ./test/certgen -dir certs -hosts localhost,127.0.0.1

.PHONY: run
run: build certs ## Run the webhook locally against $$KUBECONFIG with the certificates in certs/.
	$(BIN)/argo-completion-webhook --cert-dir certs --kubeconfig "$(KUBECONFIG)" --host 127.0.0.1 \
		--metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081 --zap-devel

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet, and fail on unformatted files.
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

.PHONY: lint
lint: golangci-lint ## golangci-lint with .golangci.yml (controller-runtime's linters) on the module's packages.
	$(BIN)/golangci-lint run ./...

##@ Test

.PHONY: test
test: vet lint tools tools-k8s-min argo-tools kustomize helm promql unit fuzz-short integration integration-k8s-min chart-lint deploy-test e2e ## Everything: vet, lint, unit, short fuzz, integration (on 1.37.2 and 1.30.14), chart lint, deploy, e2e (builds the tools once).

.PHONY: unit
unit: ## Unit tests (race detector on): rules, handlers, the in-process TLS server; then the handler's cost bounds (without the race detector, which defeats its pools).
	go test -race $(GO_TEST_FLAGS) ./rules/... ./webhook/... ./repair/... ./internal/... ./cmd/...
	go test $(GO_TEST_FLAGS) -count=1 -run '^TestReviewCostBounds$$' -v ./webhook/ | grep -E '^(---|ok|FAIL|\s+bench_test)|cost'; exit $${PIPESTATUS[0]}

FUZZ_TIME ?= 5m
FUZZ_TARGETS := FuzzTaskResultHandler FuzzWorkflowHandler
.PHONY: fuzz-short
fuzz-short: ## Fuzz each handler for 10s (part of make test).
	@for f in $(FUZZ_TARGETS); do go test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s -fuzzminimizetime 1s ./webhook/ || exit 1; done

.PHONY: fuzz
fuzz: ## Fuzz each handler for FUZZ_TIME (default 5m).
	@for f in $(FUZZ_TARGETS); do go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime 10s ./webhook/ || exit 1; done

.PHONY: integration
integration: tools ## Integration tests (race detector on) against a real kube-apiserver + etcd.
	go test -race $(GO_TEST_FLAGS) -count=1 -v -timeout 20m ./test/integration/... 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT)'; exit $${PIPESTATUS[0]}

.PHONY: integration-k8s-min
integration-k8s-min: ## The integration suite against the minimum supported kube-apiserver (1.30.14).
	$(MAKE) --no-print-directory integration K8S_VERSION=$(K8S_MIN_VERSION)

CHART := deploy/chart/argo-completion-webhook
.PHONY: chart-lint
chart-lint: helm ## helm lint --strict and helm template of the chart, with its defaults and each ci/*-values.yaml.
	@for v in "" $(wildcard $(CHART)/ci/*-values.yaml); do \
		echo "helm lint and template $(CHART) $${v:+-f $$v}"; \
		$(BIN)/helm lint --strict --quiet $(CHART) --namespace argo-completion-webhook $${v:+-f $$v} || exit 1; \
		$(BIN)/helm template argo-completion-webhook $(CHART) --namespace argo-completion-webhook $${v:+-f $$v} >/dev/null || exit 1; \
	done

.PHONY: deploy-test
deploy-test: tools kustomize helm promql ## Validate deploy/ and the chart on a real API server (dry-run, RBAC, parity, alerts, cert-manager hand-off).
	go test $(GO_TEST_FLAGS) -count=1 -v -timeout 20m ./test/deploy/... 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT)'; exit $${PIPESTATUS[0]}

.PHONY: e2e
e2e: tools argo-tools ## End-to-end: Argo's real workflow-controllers (ARGO_VERSIONS) with and without the webhook, and the stuck family repaired.
	E2E_ARGO_VERSIONS=$(subst $(space),$(comma),$(strip $(ARGO_VERSIONS))) go test $(GO_TEST_FLAGS) -count=1 -v -timeout 45m ./test/e2e/... 2>&1 | grep -v -E '^=== (RUN|PAUSE|CONT)'; exit $${PIPESTATUS[0]}

##@ Performance

BENCH_TIME ?= 1s
.PHONY: bench
bench: ## Benchmarks: floor (json.Valid), typical (controller-runtime defaulter) and ours on the same bytes, one core.
	@mkdir -p .work
	go test -run '^$$' -bench BenchmarkReview -benchmem -cpu 1 -benchtime $(BENCH_TIME) -count 1 ./webhook/ | tee .work/bench.txt | go run ./test/benchtable

.PHONY: reader-bench
reader-bench: ## Compare the handler's reader with gjson and jsonparser on a 2.2 MB Workflow review.
	cd test/tools/readerbench && go test -run '^$$' -bench . -benchmem -cpu 1 .

LOAD_DURATION ?= 10s
.PHONY: load
load: ## Drive the TLS server with 16 keep-alive clients per request size, ours vs typical: p50/p90/p99, req/s.
	LOAD_DURATION=$(LOAD_DURATION) go test -count=1 -run '^TestLoadOverTLS$$' -v ./webhook/ | grep -v -E '^(=== |--- |PASS|ok)'

.PHONY: soak
soak: ## 90 s of load after a 30 s warm-up over TLS: zero errors, p99, RSS growth under 20%.
	LOAD_DURATION=20s go test -count=1 -run '^TestSoakOverTLS$$' -v ./webhook/ | grep -E '^soak|FAIL|ok'

SCALE_SIZES ?= 10000,50000,100000
.PHONY: scale
scale: build tools ## Pod cache at cluster scale: RSS, sync time and lookup p99 at SCALE_SIZES Argo pods, ours vs untrimmed (not in make test; ~20 min).
	@mkdir -p .work
	go run ./test/scale -sizes $(SCALE_SIZES) -out .work/scale.txt

.PHONY: repair-scale
repair-scale: build tools ## repair --all-namespaces on 2,000 workflows, 20,000 pods, 10,000 task results: wall time, peak RSS, API requests (not in make test; ~2-3 min).
	@mkdir -p .work
	go run ./test/scale repair -out .work/repair-scale.txt

##@ Tools (built once into bin/, reused)

.PHONY: tools
tools: $(K8S_BIN)/kube-apiserver $(K8S_BIN)/etcd ## Build the test control plane (kube-apiserver K8S_VERSION, default 1.37.2; etcd).

.PHONY: tools-k8s-min
tools-k8s-min: $(BIN)/k8s/$(K8S_MIN_VERSION)/kube-apiserver $(BIN)/k8s/$(K8S_MIN_VERSION)/etcd ## Build the test control plane with the minimum supported kube-apiserver (1.30.14).

$(BIN)/k8s/$(K8S_DEFAULT_VERSION)/kube-apiserver: test/tools/kube-apiserver/go.mod
	@echo "building kube-apiserver $(K8S_DEFAULT_VERSION) from k8s.io/kubernetes (about 4-9 minutes the first time)"
	cd test/tools/kube-apiserver && go build -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# Older versions: one tool module each, test/tools/kube-apiserver-<version>.
$(BIN)/k8s/%/kube-apiserver: test/tools/kube-apiserver-%/go.mod
	@echo "building kube-apiserver $* from k8s.io/kubernetes (about 4-9 minutes the first time)"
	cd test/tools/kube-apiserver-$* && go build -o $@ k8s.io/kubernetes/cmd/kube-apiserver

# One etcd (v3.6, which serves every supported kube-apiserver) in each version's directory: the
# second build only links, from the Go build cache.
$(BIN)/k8s/%/etcd: test/tools/etcd/go.mod test/tools/etcd/main.go
	@echo "building etcd from go.etcd.io/etcd/server/v3 (about 1 minute the first time)"
	cd test/tools/etcd && go build -o $@ .

.PHONY: argo-tools
argo-tools: $(addsuffix /workflow-controller,$(addprefix $(BIN)/argo/,$(ARGO_VERSIONS))) ## Build Argo's workflow-controller of each version in ARGO_VERSIONS.

$(BIN)/argo/%/workflow-controller: test/tools/argo-%/go.mod
	@echo "building Argo's workflow-controller $* from github.com/argoproj/argo-workflows/v3 (about 3-5 minutes the first time)"
	cd test/tools/argo-$* && go build -o $@ github.com/argoproj/argo-workflows/v3/cmd/workflow-controller

# Argo v4 lives in its own major-version module (the shorter stem makes make pick this rule).
$(BIN)/argo/v4.%/workflow-controller: test/tools/argo-v4.%/go.mod
	@echo "building Argo's workflow-controller v4.$* from github.com/argoproj/argo-workflows/v4 (about 5 minutes the first time)"
	cd test/tools/argo-v4.$* && go build -o $@ github.com/argoproj/argo-workflows/v4/cmd/workflow-controller

.PHONY: kustomize
kustomize: $(BIN)/kustomize ## Build kustomize (renders deploy/ in the deploy tests).

$(BIN)/kustomize: test/tools/kustomize/go.mod
	cd test/tools/kustomize && go build -o $@ sigs.k8s.io/kustomize/kustomize/v5

.PHONY: helm
helm: $(BIN)/helm ## Build helm (lints and renders deploy/chart in the chart and deploy tests).

$(BIN)/helm: test/tools/helm/go.mod
	@echo "building helm from helm.sh/helm/v4 (about 1-2 minutes the first time)"
	cd test/tools/helm && go build -o $@ helm.sh/helm/v4/cmd/helm

.PHONY: promql
promql: $(BIN)/promql ## Build bin/promql: Prometheus' own PromQL parser, for the deploy tests' alert checks.

$(BIN)/promql: test/tools/promql/go.mod test/tools/promql/main.go
	cd test/tools/promql && go build -o $@ .

.PHONY: golangci-lint
golangci-lint: $(BIN)/golangci-lint ## Build golangci-lint v2 (make lint).

$(BIN)/golangci-lint: test/tools/golangci-lint/go.mod
	@echo "building golangci-lint from github.com/golangci/golangci-lint/v2 (about 1-3 minutes the first time)"
	cd test/tools/golangci-lint && go build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
