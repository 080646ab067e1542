// Package repair completes WorkflowTaskResults that are already stuck: an admission webhook only
// sees writes, and a task result whose executor never finalized it receives no more writes. It
// lists the task results whose report-outputs-completed label is not "true" (in one namespace,
// in several in turn, or in all), gathers what rule A3 reads (the owner Workflow's UID, completed
// label and deletionTimestamp, the node's type, phase and finishedAt, the pods carrying the node
// ID, the result's Workflow or Pod owner), decides each with webhook.DecideStuckTaskResult (the
// same rule code the webhook's package holds, with its table test) and reports.
//
// With Apply it decides twice, because one moment's facts can mislead: `argo retry` (v3.5.4's
// RetryWorkflow) deletes the pods first and updates the Workflow afterwards, and in between a
// node reads "pod gone, node finished long ago" while its ID is about to be reused. The first
// pass keeps, for each task result found safe, only its key and a fingerprint of its facts (the
// node's phase, startedAt and finishedAt; the Workflow's UID, phase, startedAt and finishedAt;
// the task result's UID; the UIDs of the pods carrying the node ID). After ConfirmAfter
// (--confirm-after, default 30s; no wait when nothing is to repair) the confirmation pass
// re-reads each of them, its Workflow and its pods from the API server, never from the first
// pass's reads, decides again, and patches that one label only if the result is still safe and
// the fingerprint unchanged, with the resourceVersion just read as a precondition. A row whose
// facts changed is a skip ("facts changed during the confirmation delay: …"); a task result
// deleted meanwhile is a skip too, not an error.
//
// Memory: the first pass reuses one workflow's facts (its Workflow and pods, read at most 10s
// before) for that workflow's task results, which are listed together, and holds no other
// workflow's; candidates hold fingerprints, not objects.
package repair
