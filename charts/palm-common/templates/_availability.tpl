{{/*
The PodDisruptionBudget, over exactly this release's pods. `pdb.minAvailable`
or `pdb.maxUnavailable` (one of them; a single-replica service uses
maxUnavailable 1 so a node drain is never blocked forever).
Usage: {{ include "palm.pdb" . }}
*/}}
{{- define "palm.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "palm.names.fullname" . }}
  namespace: {{ include "palm.names.namespace" . }}
  labels:
    {{- include "palm.labels.standard" . | nindent 4 }}
spec:
  {{- if hasKey .Values.pdb "minAvailable" }}
  minAvailable: {{ .Values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ required "pdb.minAvailable or pdb.maxUnavailable is required" .Values.pdb.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "palm.labels.matchLabels" . | nindent 6 }}
{{- end -}}

{{/*
A NetworkPolicy peer: pods with `podLabels` in namespace `namespace` (the
namespace matched by its kubernetes.io/metadata.name label), or an `ipBlock`
({cidr, except}).
Usage: {{- include "palm.networkPolicy.peer" $peer | nindent 8 }}
*/}}
{{- define "palm.networkPolicy.peer" -}}
{{- if .ipBlock -}}
- ipBlock:
    {{- toYaml .ipBlock | nindent 4 }}
{{- else -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .podLabels | nindent 6 }}
{{- end -}}
{{- end -}}

{{/*
The NetworkPolicy: default deny both ways for this release's pods, then
`ingress` (a list of {port, peers}) and `egress` (a list of {port, peers},
`protocols` optional, default TCP). DNS to kube-dns is always allowed out
(networkPolicy.dns).
Usage: {{ include "palm.networkPolicy" (dict "context" . "ingress" (list (dict "port" 9090 "peers" (list .Values.networkPolicy.prometheus))) "egress" (list .Values.networkPolicy.rabbitmq)) }}
*/}}
{{- define "palm.networkPolicy" -}}
{{- $ctx := .context -}}
{{- $dns := $ctx.Values.networkPolicy.dns -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "palm.labels.matchLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- range .ingress }}
    - ports:
        - port: {{ .port }}
          protocol: TCP
      from:
        {{- range .peers }}
        {{- include "palm.networkPolicy.peer" . | nindent 8 }}
        {{- end }}
    {{- end }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      to:
        {{- include "palm.networkPolicy.peer" $dns | nindent 8 }}
    {{- range .egress }}
    - ports:
        - port: {{ .port }}
          protocol: TCP
      to:
        {{- include "palm.networkPolicy.peer" . | nindent 8 }}
    {{- end }}
{{- end -}}
