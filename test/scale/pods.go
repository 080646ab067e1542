package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/argo-completion-webhook/argo-completion-webhook/rules"
)

// The cluster the run builds: Argo workflow pods in one namespace, podsPerWorkflow per workflow.
const (
	namespace       = "argo"
	podsPerWorkflow = 10
	executorImage   = "quay.io/argoproj/argoexec:v3.5.4"
)

// node names pod i of the run: its workflow, the workflow's UID, its node ID and its name, as
// the controller names them (node ID <workflow>-<hash>, pod <workflow>-<template>-<hash>).
type node struct {
	workflow, workflowUID, id, pod string
}

func nodeOf(i int) node {
	wf := fmt.Sprintf("scale-wf-%06d", i/podsPerWorkflow)
	hash := fmt.Sprintf("%010d", (int64(i)*2654435761)%4294967296)
	return node{
		workflow:    wf,
		workflowUID: fmt.Sprintf("5ca1e000-0000-4000-8000-%012d", i/podsPerWorkflow),
		id:          wf + "-" + hash,
		pod:         wf + "-main-" + hash,
	}
}

// terminated reports whether pod i has ended: every other one.
func terminated(i int) bool { return i%2 == 0 }

// resource reports whether pod i runs a resource template (init and main, `argoexec resource`,
// no wait container): one in ten. The webhook completes such a pod's task result (rule A1), so a
// review of one is patched exactly when the lookup found its pod.
func resource(i int) bool { return i%10 == 3 }

// argoTemplate is a ~3 KB ARGO_TEMPLATE value, as the controller serializes a container
// template with a script-sized argument.
func argoTemplate(wf string) string {
	script := strings.Repeat("echo processing shard ${SHARD} of "+wf+" && sleep 1; ", 48)
	return `{"name":"main","inputs":{"parameters":[{"name":"shard","value":"7"}]},"outputs":{"parameters":[{"name":"result","valueFrom":{"path":"/tmp/result"}}]},` +
		`"metadata":{"labels":{"team":"data"}},"container":{"name":"","image":"alpine:3.19","command":["sh","-c"],"args":["` + script + `"],` +
		`"resources":{"requests":{"cpu":"100m","memory":"64Mi"}}},"archiveLocation":{"archiveLogs":false},"retryStrategy":{"limit":"2"}}`
}

// argoPod is pod i as Argo v3.5's controller creates it (workflowpod.go): the workflow and
// completed labels, the node-id, node-name and default-container annotations, the Workflow as
// controlling owner, an init container and wait and main containers (main only for a resource
// template), each with the executor's environment including ARGO_TEMPLATE, the var-run-argo
// volume, bound to a node.
func argoPod(i int, template string) *corev1.Pod {
	n := nodeOf(i)
	env := func(container string) []corev1.EnvVar {
		return []corev1.EnvVar{
			{Name: "ARGO_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: "ARGO_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.uid"}}},
			{Name: "GODEBUG", Value: "x509ignoreCN=0"},
			{Name: "ARGO_WORKFLOW_NAME", Value: n.workflow},
			{Name: "ARGO_WORKFLOW_UID", Value: n.workflowUID},
			{Name: "ARGO_CONTAINER_NAME", Value: container},
			{Name: "ARGO_TEMPLATE", Value: template},
			{Name: "ARGO_NODE_ID", Value: n.id},
			{Name: "ARGO_INCLUDE_SCRIPT_OUTPUT", Value: "false"},
			{Name: "ARGO_DEADLINE", Value: "0001-01-01T00:00:00Z"},
			{Name: "ARGO_PROGRESS_FILE", Value: "/var/run/argo/progress"},
		}
	}
	mounts := []corev1.VolumeMount{{Name: "var-run-argo", MountPath: "/var/run/argo"}}
	containers := []corev1.Container{
		{Name: "wait", Image: executorImage, Command: []string{"argoexec", "wait", "--loglevel", "info", "--log-format", "text"},
			Env: env("wait"), VolumeMounts: mounts},
		{Name: "main", Image: "alpine:3.19", Command: []string{"/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--log-format", "text", "--", "sh", "-c"},
			Args: []string{"echo processing shard 7"}, Env: env("main"), VolumeMounts: mounts},
	}
	if resource(i) {
		containers = []corev1.Container{{Name: "main", Image: executorImage, Command: []string{"argoexec", "resource", "create"},
			Env: env("main"), VolumeMounts: mounts}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      n.pod,
			Namespace: namespace,
			Labels:    map[string]string{rules.LabelWorkflow: n.workflow, rules.LabelCompleted: "false"},
			Annotations: map[string]string{
				rules.AnnotationNodeID:                    n.id,
				"workflows.argoproj.io/node-name":         n.workflow + "[0].shard(7)",
				"kubectl.kubernetes.io/default-container": "main",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Workflow", Name: n.workflow,
				UID: types.UID(n.workflowUID), Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName:      fmt.Sprintf("node-%02d", i%40),
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "init", Image: executorImage, Command: []string{"argoexec", "init", "--loglevel", "info", "--log-format", "text"},
				Env: env("init"), VolumeMounts: mounts}},
			Containers: containers,
			Volumes:    []corev1.Volume{{Name: "var-run-argo", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// setStatus writes what the kubelet reports for pod i: Succeeded with every container terminated
// when ended, Running otherwise.
func setStatus(pod *corev1.Pod, i int, ended bool) {
	started := metav1.NewTime(pod.CreationTimestamp.Add(2 * time.Second))
	finished := metav1.NewTime(started.Add(time.Minute))
	status := func(c corev1.Container) corev1.ContainerStatus {
		s := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image + "@sha256:" + strings.Repeat("0", 64),
			ContainerID: "containerd://" + strings.Repeat("a", 64), Started: new(true), Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}
		if ended {
			s.Started, s.Ready = new(false), false
			s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
				StartedAt: started, FinishedAt: finished, ContainerID: s.ContainerID}}
		}
		return s
	}
	pod.Status.Phase = corev1.PodRunning
	if ended {
		pod.Status.Phase = corev1.PodSucceeded
	}
	pod.Status.HostIP, pod.Status.PodIP, pod.Status.StartTime = "10.0.0.1", fmt.Sprintf("10.1.%d.%d", i/250%250, i%250), &started
	ready := corev1.ConditionTrue
	if ended {
		ready = corev1.ConditionFalse
	}
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: pod.CreationTimestamp},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: started},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: started},
	}
	init := status(pod.Spec.InitContainers[0])
	init.Started, init.Ready = new(false), false
	init.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: started, FinishedAt: started, ContainerID: init.ContainerID}}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{init}
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, status(c))
	}
}

// createPods creates pods from (inclusive) to to (exclusive) with workers concurrent writers:
// each pod is created, then its status written as the kubelet would.
func createPods(ctx context.Context, cs kubernetes.Interface, from, to, workers int, progress func(done int)) error {
	next := atomic.Int64{}
	next.Store(int64(from))
	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				n := nodeOf(i)
				pods := cs.CoreV1().Pods(namespace)
				pod, err := pods.Create(ctx, argoPod(i, argoTemplate(n.workflow)), metav1.CreateOptions{})
				if err != nil {
					errc <- fmt.Errorf("creating pod %d: %w", i, err)
					return
				}
				setStatus(pod, i, terminated(i))
				if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
					errc <- fmt.Errorf("writing the status of pod %d: %w", i, err)
					return
				}
				if d := done.Add(1); d%5000 == 0 && progress != nil {
					progress(from + int(d))
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}
