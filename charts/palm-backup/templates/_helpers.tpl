{{/*
palm-backup's own helpers; names, labels, images, the ServiceAccount, the
ExternalSecret and the security contexts come from palm-common.
*/}}

{{/*
Labels of a pod template of one component (backup, restore-check, uptime-kuma).
Usage: {{- include "palmBackup.podLabels" (dict "context" . "component" "backup") | nindent 12 }}
*/}}
{{- define "palmBackup.podLabels" -}}
{{ include "palm.labels.pod" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
What every pod of the chart shares: the ServiceAccount (IRSA), the pod
security context, no restarts in place (the Job retries), scheduling.
Usage: {{- include "palmBackup.podCommon" . | nindent 10 }}
*/}}
{{- define "palmBackup.podCommon" -}}
serviceAccountName: {{ include "palm.names.serviceAccount" . }}
restartPolicy: Never
securityContext:
  {{- include "palm.pod.securityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Environment variables from the ExternalSecret's Secret, only the keys named.
Usage: {{- include "palmBackup.secretEnv" (dict "context" . "keys" (list "MONGO_URI")) | nindent 12 }}
*/}}
{{- define "palmBackup.secretEnv" -}}
{{- $ctx := .context -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "palm.names.secret" $ctx }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{/*
The S3 settings of backup.sh and restore.sh, and the environment every
container of the image runs with (a writable HOME and no bytecode on the
read-only root file system).
Usage: {{- include "palmBackup.env" . | nindent 12 }}
*/}}
{{- define "palmBackup.env" -}}
- name: S3_BUCKET
  value: {{ required "s3.bucket is required" .Values.s3.bucket | quote }}
- name: S3_PREFIX
  value: {{ .Values.s3.prefix | quote }}
- name: S3_SSE
  value: {{ .Values.s3.sse | quote }}
- name: S3_KMS_KEY_ID
  value: {{ .Values.s3.kmsKeyId | quote }}
- name: S3_STORAGE_CLASS
  value: {{ .Values.s3.storageClass | quote }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
- name: PALM_DB
  value: {{ .Values.backup.database | quote }}
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}
