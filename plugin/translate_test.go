package plugin

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
)

// fullPod is a pod that uses every part of the spec the plugin must carry over, plus the local
// scheduling leftovers it must remove.
func fullPod(uid, name, namespace string) RetrievedPodData {
	shared := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared-config"}, Data: map[string]string{"app.conf": "x=1"}}
	secret := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("hunter2")}}
	projected := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-api-access-abcde"}, Data: map[string]string{
		"token": "eyJhbGciOi.local-token", "ca.crt": "-----BEGIN CERTIFICATE-----", "namespace": namespace,
		"labels/app": "web",
	}}
	probe := &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds:    7,
		FailureThreshold: 4,
	}
	return RetrievedPodData{
		Pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: namespace, UID: types.UID(uid),
				Labels: map[string]string{"app": "web"},
				Annotations: map[string]string{
					"team": "a",
					// A pre-exec of another purpose than the mesh, and a batch flag: neither
					// reaches the remote pod, and neither makes the pod a mesh pod.
					"slurm-job.vk.io/pre-exec": "module load cuda/12",
					"slurm-job.vk.io/flags":    "--mem=1G",
					// Tunnel commands of the VK's other network modes hold credentials.
					AnnotWstunnelCommands:                              "wstunnel client --http-upgrade-path-prefix s3cr3t ws://x:80",
					"interlink.eu/rathole-client-commands":             "echo dG9rZW4= | base64 -d > client.toml",
					"kubectl.kubernetes.io/last-applied-configuration": "{}",
				},
			},
			Spec: corev1.PodSpec{
				NodeName:           "virtual-kubelet",
				NodeSelector:       map[string]string{"kubernetes.io/hostname": "virtual-kubelet", "disk": "ssd"},
				ServiceAccountName: "builder",
				RestartPolicy:      corev1.RestartPolicyOnFailure,
				SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(1000)), FSGroup: new(int64(2000))},
				DNSPolicy:          corev1.DNSNone,
				DNSConfig:          &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: []string{"team-a.svc.cluster.local"}},
				Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
					Weight:          10,
					PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
				}}}},
				Tolerations: []corev1.Toleration{
					{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists},
					{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
				},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "creds"}},
				InitContainers: []corev1.Container{{
					Name: "migrate", Image: "registry.example/migrate:1", Command: []string{"/migrate"},
					EnvFrom:      []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shared-config"}}}},
					VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
				}},
				Containers: []corev1.Container{{
					Name: "web", Image: "registry.example/web:2", Args: []string{"--port=8080"},
					Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Env:            []corev1.EnvVar{{Name: "MODE", Value: "prod"}},
					Resources:      corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), "nvidia.com/gpu": resource.MustParse("1")}, Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}},
					LivenessProbe:  probe,
					ReadinessProbe: probe,
					StartupProbe:   probe,
					Lifecycle:      &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/drain"}}}},
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "config", MountPath: "/etc/app"},
						{Name: "creds", MountPath: "/var/run/creds"},
						{Name: "scratch", MountPath: "/tmp"},
						{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
					},
				}},
				Volumes: []corev1.Volume{
					{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shared-config"}}}},
					{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: new(int32(0o400))}}},
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
						DefaultMode: new(int32(0o644)),
						Sources:     []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
					}}},
				},
			},
		},
		// InterLink repeats shared objects for every container entry.
		Containers: []RetrievedContainer{
			{Name: "migrate", ConfigMaps: []corev1.ConfigMap{shared}, ProjectedVolumeMaps: []corev1.ConfigMap{projected}},
			{Name: "web", ConfigMaps: []corev1.ConfigMap{shared}, Secrets: []corev1.Secret{secret}, ProjectedVolumeMaps: []corev1.ConfigMap{projected}},
		},
	}
}

var testOffloading = Offloading{
	NamespacePrefix: "offloading",
	NodeSelector:    map[string]string{"pool": "remote"},
	NodeTolerations: []corev1.Toleration{{Key: "remote", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
}

func TestTranslateGolden(t *testing.T) {
	req := fullPod("0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11", "web-0", "team-a")
	plan, err := Translate(&req, testOffloading)
	if err != nil {
		t.Fatal(err)
	}
	got, err := yaml.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "full-pod.golden", got)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	goldentest.Check(t, path, got)
}

// TestTranslateKeepsSpec checks the properties the golden file shows, so a careless -update cannot
// bless a translation that loses them.
func TestTranslateKeepsSpec(t *testing.T) {
	req := fullPod("0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11", "web-0", "team-a")
	plan, err := Translate(&req, testOffloading)
	if err != nil {
		t.Fatal(err)
	}
	spec := plan.Pod.Spec
	local := req.Pod.Spec
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"liveness probe", local.Containers[0].LivenessProbe, spec.Containers[0].LivenessProbe},
		{"startup probe", local.Containers[0].StartupProbe, spec.Containers[0].StartupProbe},
		{"lifecycle", local.Containers[0].Lifecycle, spec.Containers[0].Lifecycle},
		{"container securityContext", local.Containers[0].SecurityContext, spec.Containers[0].SecurityContext},
		{"pod securityContext", local.SecurityContext, spec.SecurityContext},
		{"affinity", local.Affinity, spec.Affinity},
		{"resources", local.Containers[0].Resources, spec.Containers[0].Resources},
		{"restartPolicy", local.RestartPolicy, spec.RestartPolicy},
		{"dnsConfig", local.DNSConfig, spec.DNSConfig},
		{"serviceAccount", "builder", spec.ServiceAccountName},
		{"nodeName", "", spec.NodeName},
		{"nodeSelector", map[string]string{"disk": "ssd", "pool": "remote"}, spec.NodeSelector},
		{"automount", new(false), spec.AutomountServiceAccountToken},
		{"hostname", "web-0", spec.Hostname},
		{"configmaps deduplicated", 1, len(plan.ConfigMaps)},
		{"secrets: creds + projected", 2, len(plan.Secrets)},
	} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.what, diff)
		}
	}
	for _, tol := range spec.Tolerations {
		if tol.Key == "virtual-node.interlink/no-schedule" {
			t.Errorf("virtual-node toleration reached the remote pod")
		}
	}
	for k := range plan.Pod.Annotations {
		if droppedAnnotation(k) {
			t.Errorf("annotation %s carries mesh keys and must not reach the remote pod", k)
		}
	}
}

func TestTranslateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RetrievedPodData)
		field  string
	}{
		{"no uid", func(r *RetrievedPodData) { r.Pod.UID = "" }, "pod.metadata.uid"},
		{"no name", func(r *RetrievedPodData) { r.Pod.Name = "" }, "pod.metadata.name"},
		{"no namespace", func(r *RetrievedPodData) { r.Pod.Namespace = "" }, "pod.metadata.namespace"},
		{"no containers", func(r *RetrievedPodData) { r.Pod.Spec.Containers = nil }, "pod.spec.containers"},
		{"configmap not sent", func(r *RetrievedPodData) { r.Containers = nil }, "pod.spec.volumes[0].configMap.name"},
		{"pvc not listed", func(r *RetrievedPodData) {
			r.Pod.Spec.Volumes = append(r.Pod.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}})
		}, "pod.spec.volumes[4].persistentVolumeClaim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fullPod("uid-1", "web", "ns")
			tt.mutate(&req)
			_, err := Translate(&req, testOffloading)
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a ValidationError", err)
			}
			if verr.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", verr.Field, tt.field, err)
			}
		})
	}
}

func TestTranslateListedPVC(t *testing.T) {
	req := fullPod("uid-1", "web", "ns")
	req.Pod.Annotations[AnnotRemotePVC] = "data, other"
	req.Pod.Spec.Volumes = append(req.Pod.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}})
	plan, err := Translate(&req, testOffloading)
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Pod.Spec.Volumes[4].PersistentVolumeClaim.ClaimName; got != "data" {
		t.Errorf("claim = %q, want data", got)
	}
}

// FuzzDecodeCreate feeds arbitrary bodies through the strict request decoder and the translation:
// either a clear error (400 or 422) or a plan whose every name is a valid label.
func FuzzDecodeCreate(f *testing.F) {
	seed, _ := json.Marshal(fullPod("0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11", "web-0", "team-a"))
	f.Add(seed)
	f.Add([]byte(`{"pod":{"metadata":{"uid":"u","name":"N A M E","namespace":"x"},"spec":{"containers":[{"name":"c"}]}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"pod":null}`))
	f.Add([]byte(`{"pod":{"metadata":{"uid":7}}}`))
	f.Add([]byte("{} {}"))
	f.Add([]byte("null"))
	f.Add([]byte("{\"pod\":{\"metadata\":{\"name\":\"\xff\"}}}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req RetrievedPodData
		if err := decodeBody(body, &req); err != nil {
			var (
				verr *ValidationError
				derr *decodeError
			)
			if !errors.As(err, &verr) && !errors.As(err, &derr) {
				t.Fatalf("decode error of no known kind: %T %v", err, err)
			}
			return
		}
		plan, err := Translate(&req, testOffloading)
		if err != nil {
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("non-validation error %v", err)
			}
			return
		}
		names := []string{plan.Namespace, plan.Pod.Name}
		for _, cm := range plan.ConfigMaps {
			names = append(names, cm.Name)
		}
		for _, s := range plan.Secrets {
			names = append(names, s.Name)
		}
		for _, n := range names {
			if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
				t.Fatalf("name %q: %v", n, msgs)
			}
		}
	})
}
