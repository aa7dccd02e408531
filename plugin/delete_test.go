package plugin

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// scopedObjectsOf finds every ConfigMap and Secret made for the pod wherever the pod uses it, once
// each, and never one it shares with other pods.
func TestScopedObjectsOf(t *testing.T) {
	uid := "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"
	other := "7d1e0c2a-1111-4c1e-9a51-6f3f8a3d2c11"
	cm := func(n string) *corev1.ConfigMapVolumeSource {
		return &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: n}}
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{
			{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: cm(ScopedName("settings", uid))}},
			{Name: "b", VolumeSource: corev1.VolumeSource{ConfigMap: cm(ScopedName("settings", uid))}},
			{Name: "c", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: ScopedName("creds", uid)}}},
			{Name: "d", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: ScopedName("mesh", uid)}}},
			{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: ScopedName("token", uid)}}},
			}}}},
			{Name: "e", VolumeSource: corev1.VolumeSource{ConfigMap: cm(ScopedName("settings", other))}},
			{Name: "f", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		InitContainers: []corev1.Container{{EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: ScopedName("init-env", uid)}}}}}},
		Containers: []corev1.Container{{
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shared"}}}},
			Env: []corev1.EnvVar{
				{Name: "X", Value: "1"},
				{Name: "Y", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: ScopedName("key", uid)}, Key: "k"}}},
				{Name: "Z", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: ScopedName("settings", uid)}, Key: "k"}}},
			},
		}},
	}}
	cms, secrets := scopedObjectsOf(pod, uid)
	wantCMs := []string{ScopedName("settings", uid), ScopedName("init-env", uid)}
	wantSecrets := []string{ScopedName("creds", uid), ScopedName("mesh", uid), ScopedName("token", uid), ScopedName("key", uid)}
	if !slices.Equal(cms, wantCMs) {
		t.Errorf("ConfigMaps %v, want %v", cms, wantCMs)
	}
	if !slices.Equal(secrets, wantSecrets) {
		t.Errorf("Secrets %v, want %v", secrets, wantSecrets)
	}
}
