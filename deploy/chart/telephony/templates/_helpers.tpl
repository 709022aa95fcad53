{{- define "telephony.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telephony.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "telephony.labels" -}}
app.kubernetes.io/name: {{ include "telephony.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "telephony.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telephony.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pod's grace period: the preStop sleep, then SIGTERM and the whole drain, then a
margin for the calls' polite endings and the process's exit. */}}
{{- define "telephony.gracePeriod" -}}
{{- add .Values.preStopSleepSeconds .Values.drainTimeoutSeconds 15 -}}
{{- end -}}
