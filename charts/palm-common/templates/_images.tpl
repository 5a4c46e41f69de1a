{{/*
The container image: <repository>@<digest> when image.digest is set (what
runs is then exactly what was scanned), else <repository>:<tag> (the chart's appVersion when the tag is empty). The release
job bumps image.tag (<version>-<YYYY-MM-DD>) in helm-values/<service>/.
Usage: image: {{ include "palm.images.image" . }}
*/}}
{{- define "palm.images.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
