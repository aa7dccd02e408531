package plugin

import (
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The JSON shapes InterLink exchanges with a plugin. Field names are the wire names; they are
// InterLink's, inconsistent casing included.

// RetrievedPodData is the body of POST /create: one pod with the data its volumes need.
type RetrievedPodData struct {
	Pod corev1.Pod `json:"pod"`
	// Containers holds one entry per init container, then one per container.
	Containers []RetrievedContainer `json:"container"`
	// JobConfig and JobScript serve batch plugins; this plugin accepts and ignores them.
	JobConfig json.RawMessage `json:"jobConfig,omitempty"`
	JobScript string          `json:"jobScript,omitempty"`
}

// RetrievedContainer is the volume data InterLink gathered for one container. The same ConfigMap or
// Secret can appear in several entries.
type RetrievedContainer struct {
	Name       string             `json:"name"`
	ConfigMaps []corev1.ConfigMap `json:"configMaps"`
	// ProjectedVolumeMaps are named after the pod's projected volumes and hold their files
	// (service-account token, ca.crt, downward-API files).
	ProjectedVolumeMaps []corev1.ConfigMap `json:"projectedvolumemaps"`
	Secrets             []corev1.Secret    `json:"secrets"`
	EmptyDirs           []string           `json:"emptyDirs"`
	// PersistentVolumeClaims are the claims the container mounts, a field of InterLink's plugin
	// SDK (InterLink's own VK does not send it today); those named in interlink.io/remote-pvc are
	// created remotely when missing.
	PersistentVolumeClaims []corev1.PersistentVolumeClaim `json:"persistentVolumeClaims,omitempty"`
}

// CreateResponse is the reply to POST /create. PodJID is the remote pod's UID; the VK stores it.
type CreateResponse struct {
	PodUID string `json:"PodUID"`
	PodJID string `json:"PodJID"`
}

// PodStatus is one element of the reply to /status.
type PodStatus struct {
	Name           string                   `json:"name"`
	UID            string                   `json:"UID"`
	Namespace      string                   `json:"namespace"`
	JID            string                   `json:"JID"`
	Containers     []corev1.ContainerStatus `json:"containers"`
	InitContainers []corev1.ContainerStatus `json:"initContainers"`
}

// LogRequest is the body of /getLogs (InterLink's LogStruct).
type LogRequest struct {
	Namespace     string     `json:"Namespace"`
	PodUID        string     `json:"PodUID"`
	PodName       string     `json:"PodName"`
	ContainerName string     `json:"ContainerName"`
	Opts          LogOptions `json:"Opts"`
}

// LogOptions mirror kubectl logs' options (InterLink's ContainerLogOpts). Zero means unset.
type LogOptions struct {
	Tail         int       `json:"Tail"`
	LimitBytes   int       `json:"Bytes"`
	Timestamps   bool      `json:"Timestamps"`
	Follow       bool      `json:"Follow"`
	Previous     bool      `json:"Previous"`
	SinceSeconds int       `json:"SinceSeconds"`
	SinceTime    time.Time `json:"SinceTime"`
}

// PingResponse answers the VK's ping (GET /status with []): the capacity this plugin can offer and
// the taints the virtual node should carry.
type PingResponse struct {
	Status    string     `json:"status,omitempty"`
	Resources *Resources `json:"resources,omitempty"`
	Taints    []Taint    `json:"taints,omitempty"`
}

// Resources is the capacity reported to the virtual node, as Kubernetes quantity strings.
type Resources struct {
	CPU          string        `json:"cpu,omitempty"`
	Memory       string        `json:"memory,omitempty"`
	Pods         string        `json:"pods,omitempty"`
	Accelerators []Accelerator `json:"accelerators,omitempty"`
}

// Accelerator is an extended resource such as nvidia.com/gpu.
type Accelerator struct {
	ResourceType string `json:"resourceType"`
	Available    string `json:"available"`
}

// Taint is a taint for the virtual node.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// ErrorResponse is the JSON body of every error reply.
type ErrorResponse struct {
	Error string `json:"error"`
	// Field names the offending request field for validation errors.
	Field string `json:"field,omitempty"`
}
