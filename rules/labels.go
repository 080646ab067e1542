package rules

// The label and annotation keys the webhook and the repair command read and write. The names in
// parentheses are Argo's constants in workflow/common/common.go.
const (
	// LabelWorkflow (LabelKeyWorkflow) names the workflow a pod or task result belongs to.
	LabelWorkflow = "workflows.argoproj.io/workflow"
	// LabelReportOutputsCompleted (LabelKeyReportOutputsCompleted) marks a WorkflowTaskResult whose
	// executor has written everything it will write. The webhook may set it to "true".
	LabelReportOutputsCompleted = "workflows.argoproj.io/report-outputs-completed"
	// LabelCompleted (LabelKeyCompleted) marks a Workflow the controller has finished with. The
	// webhook may set it to "true" on Workflows only (rule B2), never on Pods.
	LabelCompleted = "workflows.argoproj.io/completed"
	// LabelPhase (LabelKeyPhase) mirrors status.phase on Workflows.
	LabelPhase = "workflows.argoproj.io/phase"
	// LabelArchivingStatus (LabelKeyWorkflowArchivingStatus) queues a Workflow for the archive
	// when "Pending".
	LabelArchivingStatus = "workflows.argoproj.io/workflow-archiving-status"
	// LabelControllerInstanceID (LabelKeyControllerInstanceID) names the controller instance a
	// Workflow belongs to; a controller started with an instanceID sees only objects carrying it,
	// so a task result the repair creates copies it from its Workflow.
	LabelControllerInstanceID = "workflows.argoproj.io/controller-instanceid"
	// AnnotationNodeID (AnnotationKeyNodeID) on a Pod holds the node ID, which is also the name of
	// that node's WorkflowTaskResult.
	AnnotationNodeID = "workflows.argoproj.io/node-id"
	// AnnotationOutputs (AnnotationKeyOutputs) on a Pod holds its outputs where argoexec v3.5
	// could not write its task result (RBAC denied): with the report-outputs-completed
	// annotation, the trace of that fallback.
	AnnotationOutputs = "workflows.argoproj.io/outputs"
	// ExtraPodName is the userInfo.extra key a bound service-account token carries: the name of
	// the pod the writer runs in.
	ExtraPodName = "authentication.kubernetes.io/pod-name"
)

// The Completed condition rule B2 adds to status.conditions, as the controller does
// (ConditionTypeCompleted, ConditionTrue in Argo's workflow_types.go).
const (
	// ConditionCompleted is the type of the condition a completed Workflow carries.
	ConditionCompleted = "Completed"
	// ConditionTrue is that condition's status.
	ConditionTrue = "True"
)

// The admission operations the rules tell apart (admission.k8s.io/v1 Operation).
const (
	// OperationCreate is a CREATE request.
	OperationCreate = "CREATE"
	// OperationUpdate is an UPDATE request.
	OperationUpdate = "UPDATE"
)

// Label values and phases, as Argo writes them (strings, not booleans).
const (
	valueTrue       = "true"
	valueFalse      = "false"
	archivePending  = "Pending"
	nodeTypePod     = "Pod"
	phaseSucceeded  = "Succeeded"
	phaseFailed     = "Failed"
	phaseError      = "Error"
	phaseSkipped    = "Skipped"
	phaseOmitted    = "Omitted"
	containerMain   = "main"
	containerWait   = "wait"
	containerSuperv = "supervisor"
	// finalizerArtifactGC (common.FinalizerArtifactGC) is on workflows with artifact GC.
	finalizerArtifactGC = "workflows.argoproj.io/artifact-gc"
)

// terminalPhase reports whether a workflow or node phase is Succeeded, Failed or Error
// (Argo's Phase.Completed()).
func terminalPhase(p string) bool {
	return p == phaseSucceeded || p == phaseFailed || p == phaseError
}
