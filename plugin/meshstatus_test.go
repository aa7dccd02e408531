package plugin

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMarkMeshNotReady(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	sidecar := corev1.Container{Name: MeshAgentContainer, RestartPolicy: new(corev1.ContainerRestartPolicyAlways)}
	meshSpec := corev1.PodSpec{
		InitContainers: []corev1.Container{sidecar, {Name: "wait-db"}},
		Containers:     []corev1.Container{{Name: "web"}},
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now.Add(-time.Minute))}}
	agent := func(mutate func(*corev1.ContainerStatus)) corev1.ContainerStatus {
		s := corev1.ContainerStatus{Name: MeshAgentContainer, State: running, Started: new(false)}
		if mutate != nil {
			mutate(&s)
		}
		return s
	}
	pod := func(spec corev1.PodSpec, agentStatus ...corev1.ContainerStatus) *corev1.Pod {
		return &corev1.Pod{Spec: spec, Status: corev1.PodStatus{
			Phase:                 corev1.PodPending,
			StartTime:             new(metav1.NewTime(now.Add(-2 * time.Minute))),
			InitContainerStatuses: agentStatus,
		}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want []string // substrings of the message; nil: statuses left as they were
	}{
		{name: "no sidecar", pod: pod(corev1.PodSpec{InitContainers: []corev1.Container{{Name: MeshAgentContainer}}, Containers: meshSpec.Containers}, agent(nil))},
		{name: "sidecar not created yet", pod: pod(meshSpec)},
		{name: "mesh up", pod: pod(meshSpec, agent(func(s *corev1.ContainerStatus) { s.Started = new(true) }))},
		{name: "waiting for the first handshake", pod: pod(meshSpec, agent(nil)), want: []string{"first WireGuard handshake", "after 2m0s"}},
		{name: "restarted by the startup probe", pod: pod(meshSpec, agent(func(s *corev1.ContainerStatus) {
			s.RestartCount = 2
			s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error",
				Message: "level=INFO msg=starting\nlevel=WARN msg=\"dial ws://shadow.example.org:80: connection refused\"\n"}
		})), want: []string{"restarted 2 times", "last exit 137 (Error)", "connection refused"}},
		{name: "crash loop", pod: pod(meshSpec, agent(func(s *corev1.ContainerStatus) {
			s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}}
			s.RestartCount = 4
			s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Message: strings.Repeat("x", 1000)}
		})), want: []string{"mesh-agent is CrashLoopBackOff: back-off 40s", "restarted 4 times", "last exit 1: xxx", "…"}},
		{name: "inbound", pod: func() *corev1.Pod {
			spec := meshSpec.DeepCopy()
			spec.InitContainers[0].Ports = []corev1.ContainerPort{{Name: inboundPortName, ContainerPort: 28080}}
			p := pod(*spec, agent(nil))
			p.Annotations = map[string]string{AnnotSourceUID: "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"}
			return p
		}(), want: []string{"Inbound: check the shadow pod's dial", "Ingress mesh-tunnel-0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"}},
		{name: "image pull", pod: pod(meshSpec, agent(func(s *corev1.ContainerStatus) {
			s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "pull access denied"}}
		})), want: []string{"ImagePullBackOff: pull access denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := PodStatus{
				InitContainers: append(append([]corev1.ContainerStatus(nil), tt.pod.Status.InitContainerStatuses...), corev1.ContainerStatus{Name: "wait-db", State: waiting}),
				Containers:     []corev1.ContainerStatus{{Name: "web", State: waiting}, {Name: "already-running", State: running}},
			}
			before := st.InitContainers[0].State
			markMeshNotReady(tt.pod, &st, now)
			web, waitDB := st.Containers[0].State.Waiting, st.InitContainers[len(st.InitContainers)-1].State.Waiting
			if tt.want == nil {
				if web.Reason != "PodInitializing" || waitDB.Reason != "PodInitializing" {
					t.Errorf("statuses changed: web %+v, wait-db %+v", web, waitDB)
				}
				return
			}
			for _, w := range []*corev1.ContainerStateWaiting{web, waitDB} {
				if w.Reason != ReasonMeshNotReady {
					t.Errorf("reason %q, want %s", w.Reason, ReasonMeshNotReady)
				}
				for _, s := range tt.want {
					if !strings.Contains(w.Message, s) {
						t.Errorf("message %q does not say %q", w.Message, s)
					}
				}
				if len(w.Message) > 600 {
					t.Errorf("message is %d bytes long", len(w.Message))
				}
			}
			if st.Containers[1].State.Running == nil {
				t.Error("a running container was marked")
			}
			if st.InitContainers[0].State != before {
				t.Error("the sidecar's own status was rewritten")
			}
		})
	}
}
