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

{{/*
The longest gap, in seconds, that `backup.schedule` leaves between two runs
(wrapping midnight): what the stale-backup alert allows
(observability/prometheus/rules/backup.rules.yml). The minute and hour
fields may be `*`, `N`, `A-B`, each optionally with a step `/S`, or lists of these; the
day, month and weekday fields must be `*` (a schedule on some days only has
no single interval: fails).
Usage: {{ include "palmBackup.scheduleIntervalSeconds" . }}
*/}}
{{- define "palmBackup.scheduleIntervalSeconds" -}}
{{- $schedule := .Values.backup.schedule -}}
{{- $fields := regexSplit "\\s+" (trim $schedule) -1 -}}
{{- if or (ne (len $fields) 5) (ne (index $fields 2) "*") (ne (index $fields 3) "*") (ne (index $fields 4) "*") -}}
{{- fail (printf "backup.schedule %q: only the minute and hour fields may differ from * (the stale-backup alert needs the interval)" $schedule) -}}
{{- end -}}
{{- $minutes := include "palmBackup.cronField" (dict "field" (index $fields 0) "max" 59) | fromJsonArray -}}
{{- $hours := include "palmBackup.cronField" (dict "field" (index $fields 1) "max" 23) | fromJsonArray -}}
{{- $at := dict -}}
{{- range $h := $hours }}{{ range $m := $minutes }}{{ $_ := set $at (toString (add (mul $h 60) $m)) true }}{{ end }}{{ end -}}
{{- if not $at }}{{ fail (printf "backup.schedule %q never runs" $schedule) }}{{ end -}}
{{- $first := -1 -}}{{- $last := -1 -}}{{- $gap := 0 -}}
{{- range $t := until 1440 -}}
{{- if hasKey $at (toString $t) -}}
{{- if ge $last 0 }}{{ $gap = max $gap (sub $t $last) }}{{ end -}}
{{- if lt $first 0 }}{{ $first = $t }}{{ end -}}
{{- $last = $t -}}
{{- end -}}
{{- end -}}
{{- $gap = max $gap (sub (add $first 1440) $last) -}}
{{- mul $gap 60 -}}
{{- end -}}

{{/*
The values one cron field (minute or hour) takes, as a JSON list.
Usage: {{ include "palmBackup.cronField" (dict "field" (index $fields 1) "max" 23) | fromJsonArray }}
*/}}
{{- define "palmBackup.cronField" -}}
{{- $max := .max -}}
{{- $out := list -}}
{{- range $item := splitList "," .field -}}
{{- if not (regexMatch "^(\\*|[0-9]+(-[0-9]+)?)(/[1-9][0-9]*)?$" $item) -}}
{{- fail (printf "backup.schedule: cannot read %q" $item) -}}
{{- end -}}
{{- $parts := splitList "/" $item -}}
{{- $range := index $parts 0 -}}
{{- $step := 1 -}}
{{- if eq (len $parts) 2 }}{{ $step = atoi (index $parts 1) }}{{ end -}}
{{- $from := 0 -}}{{- $to := $max -}}
{{- if ne $range "*" -}}
{{- $bounds := splitList "-" $range -}}
{{- $from = atoi (index $bounds 0) -}}
{{- if eq (len $bounds) 2 }}{{ $to = atoi (index $bounds 1) }}{{ else if eq (len $parts) 1 }}{{ $to = $from }}{{ end -}}
{{- end -}}
{{- if or (gt $to $max) (gt $from $to) }}{{ fail (printf "backup.schedule: %q is outside 0-%d" $item $max) }}{{ end -}}
{{- range $v := untilStep (int $from) (int (add $to 1)) (int $step) }}{{ $out = append $out $v }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
