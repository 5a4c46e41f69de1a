{{/*
Settings palmvalidator derives from other values rather than taking from `config`:
the admin listen address follows `ports.admin`.
Usage: {{ include "palmvalidator.derivedSettings" . | fromYaml }}
*/}}
{{- define "palmvalidator.derivedSettings" -}}
admin:
  addr: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
{{- end -}}
