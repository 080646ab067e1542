// Package repair completes WorkflowTaskResults that are already stuck: an admission webhook only
// sees writes, and a task result whose executor never finalized it receives no more writes. It
// lists the task results whose report-outputs-completed label is not "true" (in one namespace,
// in several in turn, or in all), gathers what rule A3 reads (the owner Workflow's UID, completed
// label and deletionTimestamp, the node's type, phase and finishedAt, the pods carrying the node
// ID), decides each with webhook.DecideStuckTaskResult (the same rule code the webhook's package
// holds, with its table test), reports, and with Apply patches that one label with the object's
// resourceVersion as a precondition.
package repair
