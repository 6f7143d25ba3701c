{{/* Names, labels, and the pieces the three workloads share. */}}

{{/* The release's name if it holds the chart's, else both: erank-search, erank-erank-search. */}}
{{- define "erank.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "erank.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: scoring, proxy or rest. */}}
{{- define "erank.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "erank.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The headless Service's DNS name: one A record per ready scoring pod. */}}
{{- define "erank.scoringHost" -}}
{{ include "erank.fullname" . }}-scoring.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}

{{/* The gRPC target of the proxy and the REST front: DNS, balanced by round_robin. */}}
{{- define "erank.scoringTarget" -}}
dns:///{{ include "erank.scoringHost" . }}:{{ .Values.scoring.port }}
{{- end -}}

{{- define "erank.serverName" -}}
{{ .Values.tls.serverName | default (include "erank.scoringHost" .) }}
{{- end -}}

{{/* How a client (proxy, REST front) reaches the scoring servers, as ClientSecurity keys
     (erank_contract/security.py): file paths of the mounts in "erank.clientVolumes". */}}
{{- define "erank.clientSecurity" -}}
{{- if .Values.tls.enabled }}
tls_ca: /etc/erank/server-ca/ca.crt
tls_server_name: {{ include "erank.serverName" . }}
{{- if .Values.tls.mutual }}
tls_cert: /etc/erank/client-tls/tls.crt
tls_key: /etc/erank/client-tls/tls.key
{{- end }}
{{- end }}
{{- if .Values.token.secretName }}
token_file: /etc/erank/token/token
{{- end }}
{{- end -}}

{{/* Secret volumes of a client pod: the servers' CA, its own certificate, the token. */}}
{{- define "erank.clientVolumes" -}}
{{- if .Values.tls.enabled }}
- name: server-ca
  secret:
    secretName: {{ .Values.tls.serverSecret }}
    defaultMode: 0440
    items: [{key: ca.crt, path: ca.crt}]
{{- if .Values.tls.mutual }}
- name: client-tls
  secret:
    secretName: {{ .Values.tls.clientSecret }}
    defaultMode: 0440
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
{{- end }}
{{- include "erank.tokenVolume" . }}
{{- end -}}

{{- define "erank.tokenVolume" -}}
{{- if .Values.token.secretName }}
- name: token
  secret:
    secretName: {{ .Values.token.secretName }}
    defaultMode: 0440
    items: [{key: {{ .Values.token.tokenKey }}, path: token}]
{{- end }}
{{- end -}}

{{- define "erank.clientMounts" -}}
{{- if .Values.tls.enabled }}
- {name: server-ca, mountPath: /etc/erank/server-ca, readOnly: true}
{{- if .Values.tls.mutual }}
- {name: client-tls, mountPath: /etc/erank/client-tls, readOnly: true}
{{- end }}
{{- end }}
{{- if .Values.token.secretName }}
- {name: token, mountPath: /etc/erank/token, readOnly: true}
{{- end }}
{{- end -}}

{{/* The scoring server's health, as probes check it. Plaintext: the kubelet's own gRPC probe.
     TLS: the kubelet's gRPC probe cannot verify a certificate or present one (mutual TLS), so
     an exec probe asks the same grpc.health.v1 question through erank_contract's client, with
     the mounted CA (and client certificate). */}}
{{- define "erank.healthCheck" -}}
{{- if .Values.tls.enabled }}
exec:
  command:
    - python
    - -c
    - {{ include "erank.probeScript" . | quote }}
{{- else }}
grpc:
  port: {{ .Values.scoring.port }}
  service: erank.v1.Reranker
{{- end }}
{{- end -}}

{{- define "erank.probeScript" -}}
import sys; from erank_contract.client import RerankerClient; from erank_contract.security import ClientSecurity; security = ClientSecurity(tls_ca="/etc/erank/tls/ca.crt", tls_server_name="{{ include "erank.serverName" . }}"{{ if .Values.tls.mutual }}, tls_cert="/etc/erank/client-tls/tls.crt", tls_key="/etc/erank/client-tls/tls.key"{{ end }}); sys.exit(RerankerClient("127.0.0.1:{{ .Values.scoring.port }}", security=security).health() != 1)
{{- end -}}

{{/* Prometheus /metrics of one workload, from its values' metrics: (scoring, proxy, rest).
     The host is a value, not a constant, yet must stay 0.0.0.0 in a pod: the commands'
     default, 127.0.0.1, is unreachable from outside the container, Prometheus included. */}}
{{- define "erank.metricsArgs" -}}
{{- if .enabled -}}
- --metrics-port
- {{ .port | quote }}
- --metrics-host
- {{ .host | quote }}
{{- end -}}
{{- end -}}

{{- define "erank.metricsAnnotations" -}}
{{- if .enabled -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{- define "erank.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
{{- end -}}
