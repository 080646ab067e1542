package rules

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodFacts(t *testing.T) {
	created := time.Date(2024, 4, 26, 10, 50, 0, 0, time.UTC)
	ended := created.Add(time.Minute)
	pod := func(owners ...metav1.OwnerReference) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "wf-main-1", CreationTimestamp: metav1.NewTime(created), OwnerReferences: owners},
			Spec:       corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}, Containers: []corev1.Container{{Name: "wait"}, {Name: "main"}}},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{
				{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(ended)}}},
				{Name: "wait", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			}},
		}
	}
	containers := []Container{{Name: "wait"}, {Name: "main", Terminated: true, TerminatedAt: ended}}
	cases := map[string]struct {
		pod  *corev1.Pod
		want *Pod
	}{
		"reads the Workflow owner, spec containers in order and their termination": {
			pod:  pod(metav1.OwnerReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: "wf", UID: "uid-1"}),
			want: &Pod{Name: "wf-main-1", WorkflowUID: "uid-1", Created: created, Phase: "Succeeded", Containers: containers},
		},
		"an owner of another group is not the workflow": {
			pod:  pod(metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Workflow", Name: "wf", UID: "uid-2"}),
			want: &Pod{Name: "wf-main-1", Created: created, Phase: "Succeeded", Containers: containers},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, PodFacts(tc.pod))
		})
	}
}
