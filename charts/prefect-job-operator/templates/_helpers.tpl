{{/*
Self-contained helpers: no library chart, so `helm install` needs no network.
*/}}

{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "pjo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, or release name + chart name (the release name alone when it
already contains the chart name), truncated to 63 characters.
*/}}
{{- define "pjo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart label value: name-version. */}}
{{- define "pjo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods; never change them (Deployment selectors are immutable). */}}
{{- define "pjo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pjo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "pjo.labels" -}}
helm.sh/chart: {{ include "pjo.chart" . }}
{{ include "pjo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prefect-job-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Key of the operator's API key in prefect.existingSecret: apiKeyKey, else `api-key` unless
only a basic-auth key is named (so `--set prefect.existingSecret.name=prefect-api` alone
reads the key that `kubectl create secret generic prefect-api --from-literal=api-key=...` wrote).
*/}}
{{- define "pjo.apiKeyKey" -}}
{{- with .Values.prefect.existingSecret }}
{{- if .apiKeyKey }}{{ .apiKeyKey }}{{ else if and .name (not .authStringKey) }}api-key{{ end }}
{{- end }}
{{- end }}

{{/* ServiceAccount the operator runs as. */}}
{{- define "pjo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pjo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* PJO_INSTANCE: the label value of this installation's Jobs (63 characters at most). */}}
{{- define "pjo.instance" -}}
{{- default (include "pjo.fullname" .) .Values.operator.instance | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "pjo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Cross-field checks the JSON schema cannot word clearly; each message names the exact key.
Included once, from deployment.yaml.
*/}}
{{- define "pjo.validate" -}}
{{- if and (eq .Values.rbac.mode "namespaced") (empty .Values.watchNamespaces) }}
{{- fail "rbac.mode=namespaced needs the namespaces to grant: set watchNamespaces (e.g. --set 'watchNamespaces={team-a,team-b}')" }}
{{- end }}
{{- if and (not .Values.prefect.existingSecret.name) (or .Values.prefect.existingSecret.apiKeyKey .Values.prefect.existingSecret.authStringKey) }}
{{- fail "prefect.existingSecret.apiKeyKey/authStringKey are set but prefect.existingSecret.name is empty: name the Secret that holds them" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true (the ServiceMonitor scrapes that Service)" }}
{{- end }}
{{- end }}

{{/* Name of the metrics Service: a DNS-1035 label, so the suffix fits within 63 characters. */}}
{{- define "pjo.metricsServiceName" -}}
{{- printf "%s-metrics" (include "pjo.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Service of the admission webhook (DNS-1035 label, suffix within 63 characters). */}}
{{- define "pjo.webhookServiceName" -}}
{{- printf "%s-webhook" (include "pjo.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* kubernetes.io/tls Secret holding the webhook's certificate (ca.crt, tls.crt, tls.key). */}}
{{- define "pjo.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "pjo.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}
