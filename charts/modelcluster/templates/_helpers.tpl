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

{{/* Tenant namespaces known at install, whose NetworkPolicy the chart renders (the operator covers the rest). */}}
{{- define "modelcluster.policyNamespaces" -}}
{{- $namespaces := concat .Values.networkPolicy.namespaces .Values.watchNamespaces -}}
{{- if .Values.bootstrapKey.enabled -}}
{{- $namespaces = append $namespaces .Values.bootstrapKey.tenant -}}
{{- end -}}
{{- toJson (uniq $namespaces) -}}
{{- end -}}

{{/* The Secret holding the pod credentials' signing key (data key `key`). */}}
{{- define "modelcluster.podAuthSecret" -}}
{{- default (printf "%s-pod-auth" (include "modelcluster.fullname" .)) .Values.podAuth.existingSecret -}}
{{- end -}}

{{/* The Secret holding the bootstrap API key (data key `key`). */}}
{{- define "modelcluster.bootstrapKeySecret" -}}
{{- default (printf "%s-bootstrap-key" (include "modelcluster.fullname" .)) .Values.bootstrapKey.existingSecret -}}
{{- end -}}

{{/* The namespace of the API key Secrets: of its own, so the gateway's Role there reads key Secrets only. */}}
{{- define "modelcluster.keysNamespace" -}}
{{- default (printf "%s-keys" .Release.Namespace) .Values.keys.namespace -}}
{{- end -}}
