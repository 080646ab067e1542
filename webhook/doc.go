// Package webhook is argo-completion-webhook's admission webhook: the handlers that apply the
// rules of package rules to Argo Workflows' completion labels, the pod cache they read, and the
// server (Run) that serves them.
//
// What is mutated: only the label workflows.argoproj.io/report-outputs-completed on
// WorkflowTaskResults (rules A1, A1b; A3 for the repair command, which also creates a missing
// result, complete, by rule A4), and on Workflows in the v3.5.3–v3.5.4 stuck shape the label
// workflows.argoproj.io/completed with, in the same response, status.finishedAt, the Completed
// condition and taskResultsCompletionStatus entries (rule B2; workflow-archiving-status=Pending
// with --archive). Never touched: outputs, any other label or
// field, Pods, DELETE requests; a "true" is never turned to "false" and no label is removed.
//
// The rules themselves (A1, A1b, A3, A4, B2) and why each is safe live in package rules, pure
// functions of what the request carries plus the node's pod facts; this package applies them.
// The handlers (handler.go) read only the fields the rules need in one pass (scan.go,
// review.go), gather the facts B2 asks for in order (labels, status, the pods from the cache,
// and only then, about once per stuck workflow, the task results from the API server) and build
// the JSON patch directly (patch.go).
//
// Failure semantics: the webhook never denies. A malformed review gets HTTP 400 (413 over 7 MiB)
// naming what was wrong; anything it cannot decide — another kind, a pod lookup that fails or
// exceeds LookupTimeout, a task result that cannot be read, unreadable nodes — is allowed
// unpatched. With the shipped failurePolicy: Ignore, an outage lets every write through
// unpatched.
//
// Log levels: errors for failed pod and task-result lookups; info for each patch (or, in audit mode, each patch it
// would make) and for requests it could not read; V(1) (--zap-log-level=debug) for every request
// left alone, with the reason.
package webhook
