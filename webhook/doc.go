// Package webhook is argo-completion-webhook's product: the rules that decide Argo Workflows'
// completion labels, the admission handlers that apply them, the pod cache they read, and the
// server (Run) that serves them.
//
// What is mutated: only the label workflows.argoproj.io/report-outputs-completed on
// WorkflowTaskResults (rules A1, A1b; A3 for the repair command), and on Workflows in the
// v3.5.3–v3.5.4 stuck shape the label workflows.argoproj.io/completed with, in the same response,
// status.finishedAt, the Completed condition and taskResultsCompletionStatus entries (rule B2;
// workflow-archiving-status=Pending with --archive). Never touched: outputs, any other label or
// field, Pods, DELETE requests; a "true" is never turned to "false" and no label is removed.
//
// Rules (taskresult.go, workflow.go) are pure functions of what the request carries plus the
// node's pod facts; the handlers (handler.go) read only the fields the rules need in one pass
// (scan.go, review.go) and build the JSON patch directly (patch.go).
//
// Failure semantics: the webhook never denies. A malformed review gets HTTP 400 (413 over 7 MiB)
// naming what was wrong; anything it cannot decide — another kind, a pod lookup that fails or
// exceeds LookupTimeout, unreadable nodes — is allowed unpatched. With the shipped
// failurePolicy: Ignore, an outage lets every write through unpatched.
//
// Log levels: errors for failed pod lookups; info for each patch (or, in audit mode, each patch it
// would make) and for requests it could not read; V(1) (--zap-log-level=debug) for every request
// left alone, with the reason.
package webhook
