{{/*
Service settings. `config` in a chart's values mirrors the service's TOML keys
(section → key → value); it becomes one PALM__SECTION__KEY environment
variable per leaf, the form the services read (README "Configuration").
Lists become comma-separated values, unset (null or "") values are left out so
the service keeps its default, whole numbers print without an exponent.
Secrets never appear here: the chart's schema has no key for them and they
reach the pod from the ExternalSecret's Secret.
*/}}

{{/*
One value as the environment variable's text.
Usage: {{ include "palm.config.scalar" $value }}
*/}}
{{- define "palm.config.scalar" -}}
{{- if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . }}{{ $items = append $items (include "palm.config.scalar" .) }}{{ end -}}
{{- join "," $items -}}
{{- else if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- printf "%d" (int64 .) -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/*
The flat PALM__… map of a nested settings map, as YAML (key: "value").
Usage: {{- include "palm.config.env" (dict "settings" .Values.config) | nindent 2 }}
*/}}
{{- define "palm.config.env" -}}
{{- $prefix := default "PALM" .prefix -}}
{{- range $key, $value := .settings }}
{{- $name := printf "%s__%s" $prefix (upper $key) }}
{{- if kindIs "map" $value }}
{{- include "palm.config.env" (dict "settings" $value "prefix" $name) }}
{{- else if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{ $name }}: {{ include "palm.config.scalar" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The ConfigMap holding the service's non-secret settings: `config` flattened,
merged with `settings` (a dict of values the chart derives from other values,
such as the listen addresses from the ports, which win).
Usage: {{ include "palm.config.configMap" (dict "context" . "settings" (dict "admin" (dict "addr" "0.0.0.0:9090"))) }}
*/}}
{{- define "palm.config.configMap" -}}
{{- $ctx := .context -}}
{{- $settings := mergeOverwrite (deepCopy $ctx.Values.config) (default (dict) .settings) -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
data:
  {{- include "palm.config.env" (dict "settings" $settings) | nindent 2 }}
{{- end -}}

{{/*
The ExternalSecret: AWS Secrets Manager, through the ClusterSecretStore,
writes the Secret named palm.names.secret holding this service's secrets and
nothing else. `externalSecret.keys` maps each environment variable
(PALM__AMQP__URL …) to a property of the JSON secret at
`externalSecret.remoteKey`.
Usage: {{ include "palm.externalSecret" . }}
*/}}
{{- define "palm.externalSecret" -}}
{{- $es := .Values.externalSecret -}}
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: {{ include "palm.names.fullname" . }}
  namespace: {{ include "palm.names.namespace" . }}
  labels:
    {{- include "palm.labels.standard" . | nindent 4 }}
spec:
  refreshInterval: {{ $es.refreshInterval | quote }}
  secretStoreRef:
    kind: {{ $es.secretStore.kind }}
    name: {{ $es.secretStore.name }}
  target:
    name: {{ include "palm.names.secret" . }}
    creationPolicy: Owner
    deletionPolicy: Retain
  data:
    {{- range $envVar, $property := $es.keys }}
    - secretKey: {{ $envVar }}
      remoteRef:
        key: {{ required "externalSecret.remoteKey is required" $es.remoteKey | quote }}
        property: {{ $property | quote }}
    {{- end }}
{{- end -}}
