{{/*
The Palm services' namespace: namespaces.palm, else palm-<environment>.
Usage: {{ include "palmApps.palmNamespace" . }}
*/}}
{{- define "palmApps.palmNamespace" -}}
{{- default (printf "palm-%s" .Values.environment) .Values.namespaces.palm -}}
{{- end -}}

{{/*
Labels of everything this chart renders.
Usage: {{- include "palmApps.labels" . | nindent 4 }}
*/}}
{{- define "palmApps.labels" -}}
app.kubernetes.io/name: palm-apps
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: palm
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
palm.dev/environment: {{ .Values.environment }}
{{- end -}}

{{/*
A Secrets Manager key of the environment: secretStore.remoteKeys.<name>, else palm/<environment>/<name>.
Usage: {{ include "palmApps.remoteKey" (dict "context" . "name" "rabbitmq") }}
*/}}
{{- define "palmApps.remoteKey" -}}
{{- default (printf "palm/%s/%s" .context.Values.environment .name) (get .context.Values.secretStore.remoteKeys .name) -}}
{{- end -}}

{{/*
An Application: automated sync with prune and self-heal, retries, a sync
wave, namespace creation. Parameters: name, namespace (destination), wave,
sources (a list of Application sources), serverSideApply (bool, for charts
whose CRDs exceed the client-side annotation limit).
Usage: {{ include "palmApps.application" (dict "context" . "name" "keda" "namespace" "keda" "wave" -20 "sources" $sources) }}
*/}}
{{- define "palmApps.application" -}}
{{- $ctx := .context -}}
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {{ printf "%s-%s" .name $ctx.Values.environment }}
  namespace: {{ $ctx.Values.argocdNamespace }}
  labels:
    {{- include "palmApps.labels" $ctx | nindent 4 }}
  annotations:
    argocd.argoproj.io/sync-wave: {{ .wave | quote }}
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: {{ $ctx.Values.project }}
  sources:
    {{- toYaml .sources | nindent 4 }}
  destination:
    server: {{ $ctx.Values.destinationServer }}
    namespace: {{ .namespace }}
  syncPolicy:
    automated:
      prune: {{ $ctx.Values.syncPolicy.prune }}
      selfHeal: {{ $ctx.Values.syncPolicy.selfHeal }}
    syncOptions:
      - CreateNamespace=true
      {{- if .serverSideApply }}
      - ServerSideApply=true
      {{- end }}
    retry:
      limit: {{ $ctx.Values.syncPolicy.retryLimit }}
      backoff:
        duration: 10s
        factor: 2
        maxDuration: 5m
{{- end -}}

{{/*
An upstream chart as a single Application source, with its values inline.
Usage: {{ include "palmApps.upstream" (dict "platform" .Values.platform.keda "release" "keda" "values" $values) }}
*/}}
{{- define "palmApps.upstream" -}}
- repoURL: {{ .platform.repoURL }}
  chart: {{ .platform.chart }}
  targetRevision: {{ .platform.version | quote }}
  helm:
    releaseName: {{ .release }}
    valuesObject:
      {{- toYaml .values | nindent 6 }}
{{- end -}}
