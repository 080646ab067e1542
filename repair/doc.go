// Package repair completes WorkflowTaskResults that are already stuck: an admission webhook only
// sees writes, and a task result whose executor never finalized it receives no more writes. It
// lists the task results whose report-outputs-completed label is not "true", decides each with
// rule A3 (webhook.DecideStuckTaskResult, the same rule code the webhook uses), reports, and with
// Apply patches that one label with the object's resourceVersion as a precondition.
package repair
