{{/*
Names. Every resource of a release is called palm.names.fullname (the chart
name = package = binary = image, unless overridden), so two releases of the
same chart in one namespace need distinct release names only when they also
set fullnameOverride.
*/}}

{{/*
The chart's short name (nameOverride or the chart name).
Usage: {{ include "palm.names.name" . }}
*/}}
{{- define "palm.names.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The resource name: fullnameOverride, else the name alone when the release is
named after the chart (the usual case: release palmdao of chart palmdao),
else <release>-<name>. Truncated to 63 characters (DNS label).
Usage: {{ include "palm.names.fullname" . }}
*/}}
{{- define "palm.names.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "palm.names.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A component's name under the release: <fullname>-<suffix>.
Usage: {{ include "palm.names.component" (dict "context" . "suffix" "jobs") }}
*/}}
{{- define "palm.names.component" -}}
{{- printf "%s-%s" (include "palm.names.fullname" .context) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
chart-version, for the helm.sh/chart label.
Usage: {{ include "palm.names.chart" . }}
*/}}
{{- define "palm.names.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The namespace every resource is rendered into (the release's), written out so
no manifest silently lands in `default`.
Usage: namespace: {{ include "palm.names.namespace" . }}
*/}}
{{- define "palm.names.namespace" -}}
{{- .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The ServiceAccount the pods run as.
Usage: {{ include "palm.names.serviceAccount" . }}
*/}}
{{- define "palm.names.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "palm.names.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The Secret the ExternalSecret writes (and the pods read their secrets from).
Usage: {{ include "palm.names.secret" . }}
*/}}
{{- define "palm.names.secret" -}}
{{- include "palm.names.component" (dict "context" . "suffix" "secrets") -}}
{{- end -}}
