{{/*
Settings palmdao derives from other values rather than taking from `config`:
the listen addresses follow `ports`, and the client address is taken from
X-Forwarded-For exactly when the ALB is in front.
Usage: {{ include "palmdao.derivedSettings" . | fromYaml }}
*/}}
{{- define "palmdao.derivedSettings" -}}
admin:
  addr: {{ printf "0.0.0.0:%d" (int .Values.ports.admin) | quote }}
http:
  addr: {{ printf "0.0.0.0:%d" (int .Values.ports.http) | quote }}
  trust_forwarded_for: {{ .Values.ingress.enabled }}
{{- end -}}
