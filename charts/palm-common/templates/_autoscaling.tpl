{{/*
Autoscaling. A Deployment has at most one autoscaler: an HPA (palm.autoscaling.hpa)
or a KEDA ScaledObject (which creates and owns its own HPA), never both;
`make check-charts` asserts it over every rendered environment.
*/}}

{{/*
An HPA on CPU utilisation: autoscaling.minReplicas, maxReplicas,
targetCPUUtilizationPercentage, scaleDownStabilizationSeconds.
Usage: {{ include "palm.autoscaling.hpa" . }}
*/}}
{{- define "palm.autoscaling.hpa" -}}
{{- $a := .Values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "palm.names.fullname" . }}
  namespace: {{ include "palm.names.namespace" . }}
  labels:
    {{- include "palm.labels.standard" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "palm.names.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ $a.scaleDownStabilizationSeconds }}
{{- end -}}

{{/*
A KEDA ScaledObject for the Deployment with the given `triggers` (a list of
KEDA trigger dicts); bounds from autoscaling.minReplicas/maxReplicas, and
autoscaling.cooldownPeriod / pollingInterval. KEDA creates the HPA itself
(named keda-hpa-<fullname>).
Usage: {{ include "palm.autoscaling.scaledObject" (dict "context" . "triggers" $triggers) }}
*/}}
{{- define "palm.autoscaling.scaledObject" -}}
{{- $ctx := .context -}}
{{- $a := $ctx.Values.autoscaling -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "palm.names.fullname" $ctx }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $a.pollingInterval }}
  cooldownPeriod: {{ $a.cooldownPeriod }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: {{ $a.scaleDownStabilizationSeconds }}
  triggers:
    {{- toYaml .triggers | nindent 4 }}
{{- end -}}

{{/*
A KEDA TriggerAuthentication reading `parameters` (a dict KEDA parameter →
key) from the ExternalSecret's Secret, so scaler credentials come from
Secrets Manager like the service's own.
Usage: {{ include "palm.autoscaling.triggerAuthentication" (dict "context" . "parameters" (dict "host" "PALM__AMQP__URL")) }}
*/}}
{{- define "palm.autoscaling.triggerAuthentication" -}}
{{- $ctx := .context -}}
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
spec:
  secretTargetRef:
    {{- range $parameter, $key := .parameters }}
    - parameter: {{ $parameter }}
      name: {{ include "palm.names.secret" $ctx }}
      key: {{ $key }}
    {{- end }}
{{- end -}}
