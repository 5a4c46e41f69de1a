{{/*
Settings palmplatformmetrics derives from other values rather than taking from `config`:
the admin listen address follows `ports.admin`.
Usage: {{ include "palmplatformmetrics.derivedSettings" . | fromYaml }}
*/}}
{{- define "palmplatformmetrics.derivedSettings" -}}
admin:
  addr: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
{{- end -}}
