package rules

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// A Decision says which completion labels to set, and why, for logs, metrics and warnings.
type Decision struct {
	// Set maps label keys to the values to write; empty means "leave the object alone".
	Set map[string]string
	// Status carries the status fields rule B2 writes with the completed label; nil otherwise.
	Status *StatusChange
	// Rule names the rule that decided ("A1", "A1b", "B2"); "" when nothing applies.
	Rule string
	// Reason is one short sentence: why the rule applied, or why nothing did.
	Reason string
	// Wait is, when a grace period alone holds rule A3 back, how long until it has passed; zero
	// otherwise. The repair command reports it ("will repair after 1m30s").
	Wait time.Duration
}

// StatusChange is what rule B2 writes to a Workflow's status in the same response as the label,
// reproducing the controller's "Marking workflow completed" block.
type StatusChange struct {
	// FinishedAt is the latest node finishedAt, copied verbatim from the object.
	FinishedAt string
	// CompleteTaskResults lists the node IDs whose taskResultsCompletionStatus entries become true.
	CompleteTaskResults []string
}

// Mutates reports whether the decision changes the object.
func (d Decision) Mutates() bool {
	return len(d.Set) > 0 || d.Status != nil
}

// NoDecision returns a Decision that changes nothing, with its reason.
func NoDecision(reason string) Decision {
	return Decision{Reason: reason}
}

// Pod is what the rules read of the pod that runs a node: its name, owner and containers.
// It is built from the pod cache, which keeps nothing else.
type Pod struct {
	// Name is the pod's name.
	Name string
	// WorkflowUID is the UID of the Workflow that owns the pod; "" when it has no such owner.
	WorkflowUID string
	// Created is the pod's creationTimestamp, and Phase its status.phase. Only rule A3 reads
	// them; the webhook's pod cache keeps them too.
	Created time.Time
	Phase   string
	// Containers lists spec.containers (init containers are irrelevant) with their state.
	Containers []Container
}

// Container is one of a pod's spec.containers with the state its status reports.
type Container struct {
	// Name is the container's name (main, wait, supervisor, or a user sidecar).
	Name string
	// Terminated is true when status.containerStatuses reports the container terminated.
	Terminated bool
	// TerminatedAt is when it terminated (zero when not terminated or not reported).
	TerminatedAt time.Time
}

// PodFacts reads what the rules use from a pod: the webhook's pod cache keeps exactly this, and
// the repair command builds it from the pods it lists.
func PodFacts(pod *corev1.Pod) *Pod {
	p := &Pod{Name: pod.Name, Created: pod.CreationTimestamp.Time, Phase: string(pod.Status.Phase),
		Containers: make([]Container, 0, len(pod.Spec.Containers))}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Workflow" && strings.HasPrefix(o.APIVersion, "argoproj.io/") {
			p.WorkflowUID = string(o.UID)
		}
	}
	for _, c := range pod.Spec.Containers {
		ct := Container{Name: c.Name}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == c.Name {
				if t := s.State.Terminated; t != nil {
					ct.Terminated, ct.TerminatedAt = true, t.FinishedAt.Time
				}
			}
		}
		p.Containers = append(p.Containers, ct)
	}
	return p
}

// hasAuxiliary reports whether the pod has a wait or supervisor container: the executor process
// that calls FinalizeOutput itself (container, script and containerSet templates, and resource
// templates with archiveLogs from Argo v3.7).
func (p *Pod) hasAuxiliary() bool {
	for _, c := range p.Containers {
		if c.Name == containerWait || c.Name == containerSuperv {
			return true
		}
	}
	return false
}

// executorContainers returns the containers that write the pod's task result: wait/supervisor
// when the pod has one, main otherwise (resource and data templates).
func (p *Pod) executorContainers() []Container {
	aux := p.hasAuxiliary()
	var out []Container
	for _, c := range p.Containers {
		if c.Name == containerWait || c.Name == containerSuperv || (!aux && c.Name == containerMain) {
			out = append(out, c)
		}
	}
	return out
}

// executorRunning reports whether an executor container of the pod could still write its task
// result. A container with no reported state counts as running, and so does a pod without any
// executor container (not Argo's layout).
func (p *Pod) executorRunning() bool {
	executors := p.executorContainers()
	for _, c := range executors {
		if !c.Terminated {
			return true
		}
	}
	return len(executors) == 0
}
