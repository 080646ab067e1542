// Module cert-manager pins the cert-manager release whose CRDs (deploy/crds in its module) the
// deploy validation installs. Only the CRDs are used: cert-manager's controllers are not built here,
// and its behaviour (Secret format, CA injection) is reproduced by the tests.
module github.com/argo-completion-webhook/argo-completion-webhook/test/tools/cert-manager

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
