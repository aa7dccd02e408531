{{/* The release's full name: the chart's name unless the release is named after it already. */}}
{{- define "plugin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels every object carries. */}}
{{- define "plugin.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: interlink-k8s-mesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The labels that select the plugin's pods. */}}
{{- define "plugin.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "plugin.serviceAccount" -}}
{{- default (include "plugin.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "plugin.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* The plugin's configuration file: the config value, with the sidecar's image defaulted to the
plugin's tag and the remote kubeconfig's path when one is mounted. */}}
{{- define "plugin.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $mesh := default dict $c.mesh -}}
{{- if not $mesh.agent_image -}}
{{- $_ := set $mesh "agent_image" (printf "ghcr.io/interlink-k8s-mesh/mesh-agent:%s" (include "plugin.tag" .)) -}}
{{- end -}}
{{- $_ := set $c "mesh" $mesh -}}
{{- if .Values.remoteKubeconfig.secretName -}}
{{- $k8s := default dict $c.k8s -}}
{{- $_ := set $k8s "kubeconfig_path" (printf "/etc/interlink-k8s-plugin/remote/%s" .Values.remoteKubeconfig.key) -}}
{{- $_ := set $c "k8s" $k8s -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}
