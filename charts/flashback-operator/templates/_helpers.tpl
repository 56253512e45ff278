{{/* Chart name, or nameOverride. */}}
{{- define "flashback-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: fullnameOverride, or the release name when it already
contains the chart name, or release-chart. Kubernetes names are at most 63 characters.
*/}}
{{- define "flashback-operator.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "flashback-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them in an upgrade. */}}
{{- define "flashback-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flashback-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "flashback-operator.labels" -}}
helm.sh/chart: {{ include "flashback-operator.chart" . }}
{{ include "flashback-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: flashback
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "flashback-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flashback-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference. */}}
{{- define "flashback-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Namespace of the default credentials Secret: its own setting or the release namespace. */}}
{{- define "flashback-operator.defaultSecretNamespace" -}}
{{- .Values.defaultCredentialsSecret.namespace | default .Release.Namespace }}
{{- end }}

{{/* Name of the leader-election Lease. */}}
{{- define "flashback-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "flashback-operator.fullname" .) }}
{{- end }}

{{/*
Rules on the namespaces the operator watches: its resources and their status, the Secrets
they name (metadata watched, the referenced ones read), and the Events it records.
*/}}
{{- define "flashback-operator.watchRules" -}}
- apiGroups: ["flashback.tech"]
  resources: ["flashbackrepositories"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["flashback.tech"]
  resources: ["flashbackrepositories/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Checks that no value combination makes a broken release. */}}
{{- define "flashback-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: several replicas without leader election would all reconcile the same objects; set leaderElection.enabled=true or replicaCount=1" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: a ServiceMonitor scrapes through the Service" }}
{{- end }}
{{- end }}
