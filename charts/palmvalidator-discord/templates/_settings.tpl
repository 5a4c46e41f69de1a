{{/*
Settings palmvalidator-discord derives from other values rather than taking from `config`:
the admin listen address follows `ports.admin`.
Usage: {{ include "palmvalidator-discord.derivedSettings" . | fromYaml }}
*/}}
{{- define "palmvalidator-discord.derivedSettings" -}}
admin:
  addr: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
{{- end -}}
