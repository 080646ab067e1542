// Package repair diagnoses Argo Workflows that will never complete and repairs what is safe: an
// admission webhook only sees writes, and a workflow stuck on a task result receives no more.
//
// It streams, namespace by namespace (one, several in turn, or all), the Workflows whose
// completed label is not "true" as metadata only, page by page, after one paged list of the pods
// still running, so that a Running workflow with a running pod is passed over unread. Every other
// one is read whole, one at a time, with its task results (listed by workflow label), its pods
// and, when a node is suspect, whether its executor's service account may create and patch task
// results (LocalSubjectAccessReviews). rules.DiagnoseWorkflow (pure, table-tested next to rule
// A3) then says whether it is stuck (a terminal phase with completed=false, or Running while
// every pod has finished or is gone), names the cause of each held node (argo-workflows#12985,
// R1–R11 of argo-stuck-family.md) and what is safe: flip the label (rule A3: #12985, R1, R3, R4,
// R5, R6), create the missing task result (rule A4: R9, R10, and R2 once RBAC is fixed), or
// nothing but a next step for the operator (R2 while the account may not write, R7, R8, R11).
// The workflow's facts are dropped once decided; rows and fingerprints remain.
//
// With Apply it decides twice, because one moment's facts can mislead: `argo retry` (v3.5.4's
// RetryWorkflow) deletes the pods first and updates the Workflow afterwards, and in between a
// node reads "pod gone, node finished long ago" while its ID is about to be reused. The first
// pass keeps, for each node found safe, only its key, the action and a fingerprint of its facts
// (the node's phase, startedAt and finishedAt; the Workflow's UID, phase, startedAt and
// finishedAt; the task result's UID, or none; the UIDs of the pods carrying the node ID). After
// ConfirmAfter (--confirm-after, default 30s; no wait when nothing is to repair) the
// confirmation pass re-reads each such workflow from the API server, never from the first pass's
// reads, diagnoses it again, and acts only if the node is still safe with the same action and
// the fingerprint unchanged: a flip is a merge patch of that one label with the resourceVersion
// just read as precondition, a creation a Create (never an Update: a result created meanwhile,
// AlreadyExists, is a skip). It never writes a Workflow.
package repair
