{{/*
Labels. Selector labels are fixed (name + instance) and never include
user-supplied labels: a Deployment's selector is immutable, and a user label
in it would also let a Service select pods of another release.
*/}}

{{/*
The labels every resource carries: the selector labels, the chart, the app
version, managed-by, part-of, plus the chart's commonLabels.
Usage: {{- include "palm.labels.standard" . | nindent 4 }}
*/}}
{{- define "palm.labels.standard" -}}
{{ include "palm.labels.matchLabels" . }}
helm.sh/chart: {{ include "palm.names.chart" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: palm
{{- with .Values.commonLabels }}
{{- $reserved := list "app.kubernetes.io/name" "app.kubernetes.io/instance" }}
{{- range $key, $value := . }}
{{- if not (has $key $reserved) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The selector labels: app.kubernetes.io/name and app.kubernetes.io/instance,
nothing else, ever.
Usage: {{- include "palm.labels.matchLabels" . | nindent 6 }}
*/}}
{{- define "palm.labels.matchLabels" -}}
app.kubernetes.io/name: {{ include "palm.names.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
A pod template's labels: the standard labels plus podLabels (which can never
override the selector labels: those are written last).
Usage: {{- include "palm.labels.pod" . | nindent 8 }}
*/}}
{{- define "palm.labels.pod" -}}
{{- $selector := include "palm.labels.matchLabels" . | fromYaml -}}
{{- $labels := merge (dict) $selector (include "palm.labels.standard" . | fromYaml) -}}
{{- range $key, $value := .Values.podLabels }}
{{- if not (hasKey $selector $key) }}
{{- $_ := set $labels $key ($value | toString) }}
{{- end }}
{{- end }}
{{- toYaml $labels -}}
{{- end -}}
