{{/* Names, labels and the image reference shared by every template. */}}

{{- define "modelcluster.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelcluster.operatorName" -}}
{{- printf "%s-operator" (include "modelcluster.fullname" .) -}}
{{- end -}}

{{- define "modelcluster.gatewayName" -}}
{{- printf "%s-gateway" (include "modelcluster.fullname" .) -}}
{{- end -}}

{{- define "modelcluster.gatewayMetricsName" -}}
{{- printf "%s-gateway-metrics" (include "modelcluster.fullname" .) -}}
{{- end -}}

{{- define "modelcluster.catalogName" -}}
{{- printf "%s-catalog" (include "modelcluster.fullname" .) -}}
{{- end -}}

{{- define "modelcluster.operatorServiceAccount" -}}
{{- default (include "modelcluster.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- end -}}

{{- define "modelcluster.gatewayServiceAccount" -}}
{{- default (include "modelcluster.gatewayName" .) .Values.gateway.serviceAccount.name -}}
{{- end -}}

{{/* Labels of every object; "component" is added per template. */}}
{{- define "modelcluster.labels" -}}
app.kubernetes.io/part-of: modelcluster
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "modelcluster.operatorSelector" -}}
app.kubernetes.io/name: modelcluster-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelcluster.gatewaySelector" -}}
app.kubernetes.io/name: modelcluster-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelcluster.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security profile. */}}
{{- define "modelcluster.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "modelcluster.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Namespaces whose model pods the NetworkPolicy covers. */}}
{{- define "modelcluster.policyNamespaces" -}}
{{- $namespaces := list -}}
{{- if .Values.networkPolicy.namespaces -}}
{{- $namespaces = .Values.networkPolicy.namespaces -}}
{{- else -}}
{{- $namespaces = .Values.watchNamespaces -}}
{{- if .Values.bootstrapKey.enabled -}}
{{- $namespaces = append $namespaces .Values.bootstrapKey.tenant -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{/* The key id and hash of the bootstrap key, from `key` or from `id` and `sha256`. */}}
{{- define "modelcluster.bootstrapKeyId" -}}
{{- if .Values.bootstrapKey.key -}}
{{- index (regexSplit "_" .Values.bootstrapKey.key 3) 1 -}}
{{- else -}}
{{- required "bootstrapKey.id (or bootstrapKey.key) is required" .Values.bootstrapKey.id -}}
{{- end -}}
{{- end -}}

{{- define "modelcluster.bootstrapKeySha256" -}}
{{- if .Values.bootstrapKey.key -}}
{{- sha256sum .Values.bootstrapKey.key -}}
{{- else -}}
{{- required "bootstrapKey.sha256 (or bootstrapKey.key) is required" .Values.bootstrapKey.sha256 -}}
{{- end -}}
{{- end -}}
