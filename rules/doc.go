// Package rules is the one home of argo-completion-webhook's decisions and of Argo's vocabulary
// they are written in: the label and annotation keys, phases and admission operations
// (labels.go), what a rule reads of a pod and what it decides (decision.go), the task-result
// rules A1 and A1b (taskresult.go), the Workflow rule B2 (workflow.go), the repair's rule A3
// (stuck.go), the diagnosis of the stuck family, causes R1–R11 and rule A4 (diagnose.go), the
// reading of a Workflow's status (status.go) and the Events a decision is reported by
// (events.go).
//
// Both programs that act import it and neither imports the other: the webhook (package webhook)
// applies A1, A1b and B2 at admission time; the repair command (package repair) applies A3 and
// A4 afterwards. Every rule is a pure, total and idempotent function of what the request or the
// listing carries plus explicit read-only facts (the writer pod's containers, the task results
// stored): no I/O, no globals, no logging, so each is pinned by a table test next to it. Each
// rule's comment says why no write can still land when it acts: the grace, the terminated
// executor, the merged outputs. This package imports neither webhook nor repair
// (imports_test.go fails if it does, or if repair imports webhook).
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
package rules
