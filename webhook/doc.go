// Package webhook is argo-completion-webhook's product: the rules that decide Argo Workflows'
// completion labels, the admission handlers that apply them, the pod cache they read, and the
// server (Run) that serves them.
//
// What is mutated: only the label workflows.argoproj.io/report-outputs-completed on
// WorkflowTaskResults (rules A1, A1b; A3 for the repair command, which also creates a missing
// result, complete, by rule A4 in diagnose.go), and on Workflows in the
// v3.5.3–v3.5.4 stuck shape the label workflows.argoproj.io/completed with, in the same response,
// status.finishedAt, the Completed condition and taskResultsCompletionStatus entries (rule B2;
// workflow-archiving-status=Pending with --archive). Never touched: outputs, any other label or
// field, Pods, DELETE requests; a "true" is never turned to "false" and no label is removed.
//
// Rules (taskresult.go, workflow.go, stuck.go, diagnose.go) are pure functions of what the request carries plus the
// node's pod facts; the handlers (handler.go) read only the fields the rules need in one pass
// (scan.go, review.go) and build the JSON patch directly (patch.go).
//
// Why rule B2 can lose nothing. Completing a Workflow makes Argo's controller delete its task
// results in the same reconcile, so any output the controller has not merged into
// status.nodes[<id>].outputs by then is lost for good, and any executor write that lands later
// goes nowhere. The controller's informers lag the API server: a pod can be seen terminated while
// its wait container's last writes (ReportOutputs, FinalizeOutput) are stored but not yet seen,
// which is exactly B2's shape. B2 therefore acts only when:
//
//  1. every Pod node finished, and every executor container (wait/supervisor, or main without
//     them) of every incomplete entry's pod has been terminated, at least the grace ago
//     (--b2-grace, default 2m: Argo's own RECENTLY_DELETED_POD_DURATION), or that pod is gone and
//     its node finished at least 10m ago (the orphan grace, as repair's): no executor write is
//     still in flight; the pod is this
//     workflow's (owner UID) and this attempt's (it ended after its node started);
//  2. every task result of the workflow at the API server (a metadata-only list with
//     resourceVersion "", a consistent read: from etcd, or from the watch cache once it has
//     caught up with etcd's current revision) has an entry in the completion map, so the
//     controller has seen and merged it;
//  3. each incomplete entry's task result, read from the API server itself (a GET, not a
//     cache), is not "true" (if it is, the controller completes the workflow itself, with the
//     outputs, as soon as its informer delivers it) and holds no output that the node in this
//     very update does not carry with an equal value (the controller copies each field of a
//     task result's outputs into its node); a task result that no longer exists holds nothing
//     to lose.
//
// The grace is measured on the executors' own termination times from the pod, so an informer
// that lags only delays B2. B2 declines at least once per stuck workflow (the update right
// after the pod ends) and acts at the controller's next update after the grace: controllers
// v3.5.3–v3.5.10 re-issue an update on every reconcile while task results exist (at the latest
// the 20-minute resync). Reading is ordered: labels, status, pods from the cache, and only then
// (about once per stuck workflow) the task results. A workflow with the artifact-gc finalizer is
// left alone: the controller keeps reconciling it after completion and a task result still
// "false" in its informer would re-open the map and block artifact GC; A1/A3 fix it instead.
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
