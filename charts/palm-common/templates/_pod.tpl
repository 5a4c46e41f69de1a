{{/*
The pod shape every Palm service shares: non-root, read-only root file
system, no capabilities, RuntimeDefault seccomp, no service-account token,
probes on the admin port, a preStop pause so endpoints drain before SIGTERM,
a termination grace period above shutdown.grace_ms, topology spread across
zones, settings from the ConfigMap and secrets from the ExternalSecret's
Secret.
*/}}

{{/*
Pod-level security context (uid/gid 65532, the image's nonroot user).
Usage: {{- include "palm.pod.securityContext" . | nindent 6 }}
*/}}
{{- define "palm.pod.securityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container-level security context.
Usage: {{- include "palm.pod.containerSecurityContext" . | nindent 10 }}
*/}}
{{- define "palm.pod.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Startup, liveness and readiness probes on the admin port: /healthz says the
process serves, /readyz that its dependencies are up (and it is not draining).
Usage: {{- include "palm.pod.probes" . | nindent 10 }}
*/}}
{{- define "palm.pod.probes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
{{- end -}}

{{/*
The termination grace period: the preStop pause, plus shutdown.grace_ms
rounded up to seconds, plus a margin for telemetry flush, so the kubelet never
kills a service that is still draining within its own budget.
Usage: terminationGracePeriodSeconds: {{ include "palm.pod.terminationGracePeriodSeconds" . }}
*/}}
{{- define "palm.pod.terminationGracePeriodSeconds" -}}
{{- $graceMs := int64 .Values.config.shutdown.grace_ms -}}
{{- add .Values.lifecycle.preStopSleepSeconds (div (add $graceMs 999) 1000) .Values.lifecycle.terminationMarginSeconds -}}
{{- end -}}

{{/*
Requests and limits; limits are required by the schema (cpu and memory).
Usage: {{- include "palm.pod.resources" . | nindent 10 }}
*/}}
{{- define "palm.pod.resources" -}}
{{- toYaml .Values.resources -}}
{{- end -}}

{{/*
envFrom: the ConfigMap's PALM__ settings, then the ExternalSecret's Secret.
Usage: {{- include "palm.pod.envFrom" . | nindent 10 }}
*/}}
{{- define "palm.pod.envFrom" -}}
- configMapRef:
    name: {{ include "palm.names.fullname" . }}
- secretRef:
    name: {{ include "palm.names.secret" . }}
{{- end -}}

{{/*
Spread replicas across zones (and nodes), selecting exactly this release's pods.
Usage: {{- include "palm.pod.topologySpread" . | nindent 6 }}
*/}}
{{- define "palm.pod.topologySpread" -}}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- topologyKey: {{ $key }}
  maxSkew: {{ $.Values.topologySpread.maxSkew }}
  whenUnsatisfiable: {{ $.Values.topologySpread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "palm.labels.matchLabels" $ | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
The Deployment. Parameters: `ports` (a dict name → port; `admin` required),
`strategy` (a Deployment strategy dict), `autoscaled` (true: no `replicas`
field, the autoscaler owns it).
Usage: {{ include "palm.deployment" (dict "context" . "ports" (dict "admin" 9090) "strategy" (dict "type" "Recreate") "autoscaled" false) }}
*/}}
{{- define "palm.deployment" -}}
{{- $ctx := .context -}}
{{- $v := $ctx.Values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "palm.labels.matchLabels" $ctx | nindent 6 }}
  strategy:
    {{- toYaml .strategy | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "palm.labels.pod" $ctx | nindent 8 }}
      annotations:
        checksum/config: {{ include "palm.config.configMap" (dict "context" $ctx "settings" .settings) | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "palm.names.serviceAccount" $ctx }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "palm.pod.terminationGracePeriodSeconds" $ctx }}
      securityContext:
        {{- include "palm.pod.securityContext" $ctx | nindent 8 }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      topologySpreadConstraints:
        {{- include "palm.pod.topologySpread" $ctx | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $ctx.Chart.Name }}
          image: {{ include "palm.images.image" $ctx }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            {{- range $name, $port := .ports }}
            - name: {{ $name }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          envFrom:
            {{- include "palm.pod.envFrom" $ctx | nindent 12 }}
          {{- include "palm.pod.probes" $ctx | nindent 10 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $v.lifecycle.preStopSleepSeconds }}
          resources:
            {{- include "palm.pod.resources" $ctx | nindent 12 }}
          securityContext:
            {{- include "palm.pod.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end -}}

{{/*
The ServiceAccount, with the IRSA role annotation when serviceAccount.roleArn
is set; its token is not mounted (the pods never call the Kubernetes API; the
EKS pod-identity webhook projects its own AWS token where a role is set).
Usage: {{ include "palm.serviceAccount" . }}
*/}}
{{- define "palm.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "palm.names.serviceAccount" . }}
  namespace: {{ include "palm.names.namespace" . }}
  labels:
    {{- include "palm.labels.standard" . | nindent 4 }}
  {{- if or .Values.serviceAccount.roleArn .Values.serviceAccount.annotations }}
  annotations:
    {{- with .Values.serviceAccount.roleArn }}
    eks.amazonaws.com/role-arn: {{ . | quote }}
    {{- end }}
    {{- with .Values.serviceAccount.annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{/*
The Service: one port per entry of `ports`, selecting exactly this release's
pods (the selector labels, nothing else).
Usage: {{ include "palm.service" (dict "context" . "ports" (dict "admin" 9090)) }}
*/}}
{{- define "palm.service" -}}
{{- $ctx := .context -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "palm.names.fullname" $ctx }}
  namespace: {{ include "palm.names.namespace" $ctx }}
  labels:
    {{- include "palm.labels.standard" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "palm.labels.matchLabels" $ctx | nindent 4 }}
  ports:
    {{- range $name, $port := .ports }}
    - name: {{ $name }}
      port: {{ $port }}
      targetPort: {{ $name }}
      protocol: TCP
    {{- end }}
{{- end -}}
