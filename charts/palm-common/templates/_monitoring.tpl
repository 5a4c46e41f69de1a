{{/*
Monitoring: the ServiceMonitor scraping the admin port, and the alert rules
and Grafana dashboards a chart ships from the files the observability work
keeps in the repository (observability/prometheus/rules/*.rules.yml,
observability/dashboards/*.json). A chart ships a file by a symlink under its
files/rules/ or files/dashboards/ pointing into ../../../observability (ADR
0014): one source of truth, and a rule file is linked from one chart only
(`make check-charts` fails otherwise), so no alert fires twice.
*/}}

{{/*
The ServiceMonitor: /metrics on the Service's admin port.
Usage: {{ include "palm.monitoring.serviceMonitor" . }}
*/}}
{{- define "palm.monitoring.serviceMonitor" -}}
{{- $sm := .Values.metrics.serviceMonitor -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "palm.names.fullname" . }}
  namespace: {{ include "palm.names.namespace" . }}
  labels:
    {{- include "palm.labels.standard" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "palm.labels.matchLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ include "palm.names.namespace" . }}
  jobLabel: app.kubernetes.io/name
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end -}}

{{/*
One PrometheusRule per rule file under the chart's files/rules/ (each a
Prometheus rule file: `groups:`), named <fullname>-<file stem>.
Usage: {{ include "palm.monitoring.prometheusRules" . }}
*/}}
{{- define "palm.monitoring.prometheusRules" -}}
{{- $ctx := . -}}
{{- range $path, $_ := .Files.Glob "files/rules/*.rules.yml" }}
{{- $stem := base $path | trimSuffix ".rules.yml" }}
{{- $rules := $ctx.Files.Get $path | fromYaml }}
{{- if hasKey $rules "Error" }}
{{- fail (printf "%s is not YAML: %s" $path $rules.Error) }}
{{- end }}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "palm.names.component" (dict "context" $ctx "suffix" $stem) }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
    {{- with $ctx.Values.metrics.prometheusRule.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    palm.dev/source: {{ printf "observability/prometheus/rules/%s" (base $path) | quote }}
spec:
  groups:
    {{- toYaml (required (printf "%s has no groups" $path) $rules.groups) | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
One ConfigMap per dashboard under the chart's files/dashboards/, labelled
for the Grafana sidecar (kube-prometheus-stack loads every ConfigMap with
the label, in every namespace) and foldered by annotation.
Usage: {{ include "palm.monitoring.dashboards" . }}
*/}}
{{- define "palm.monitoring.dashboards" -}}
{{- $ctx := . -}}
{{- $d := .Values.metrics.dashboards -}}
{{- range $path, $_ := .Files.Glob "files/dashboards/*.json" }}
{{- $stem := base $path | trimSuffix ".json" }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "palm.names.component" (dict "context" $ctx "suffix" (printf "dashboard-%s" $stem)) }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
    {{ $d.sidecarLabel }}: {{ $d.sidecarLabelValue | quote }}
  annotations:
    grafana_folder: {{ $d.folder | quote }}
    palm.dev/source: {{ printf "observability/dashboards/%s" (base $path) | quote }}
data:
  {{ base $path }}: |-
    {{- $ctx.Files.Get $path | nindent 4 }}
{{- end }}
{{- end -}}
