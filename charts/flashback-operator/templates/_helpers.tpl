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

{{/*
Labels of every object of the release: the standard ones, then commonLabels (which cannot
replace a standard one: the selector depends on them).
*/}}
{{- define "flashback-operator.labels" -}}
{{- $labels := include "flashback-operator.selectorLabels" . | fromYaml }}
{{- $_ := set $labels "helm.sh/chart" (include "flashback-operator.chart" .) }}
{{- $_ := set $labels "app.kubernetes.io/version" (.Values.image.tag | default .Chart.AppVersion) }}
{{- $_ := set $labels "app.kubernetes.io/component" "operator" }}
{{- $_ := set $labels "app.kubernetes.io/part-of" "flashback" }}
{{- $_ := set $labels "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml (merge $labels (.Values.commonLabels | default dict)) }}
{{- end }}

{{/*
An object's `annotations:` block, or nothing: its own annotations (dict key "own") over
commonAnnotations. Call with (dict "root" $ "own" .Values.something.annotations).
*/}}
{{- define "flashback-operator.annotations" -}}
{{- $annotations := merge (dict) (.own | default dict) (.root.Values.commonAnnotations | default dict) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "flashback-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flashback-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "flashback-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
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
The operator's Deployments, as a list: each with its name, Lease, FLASHBACK_SELECTOR (empty
without sharding), the labels its pods carry beyond the release's and those its selector adds.
The default shard keeps the release's Deployment and selector (a Deployment's selector never
changes) and serves every object whose sharding.key names no listed shard ("notin" selects an
object without the label too), so no object is left unserved; a listed shard serves
"<key> in (<name>)".
*/}}
{{- define "flashback-operator.shards" -}}
{{- $fullname := include "flashback-operator.fullname" . }}
{{- $lease := include "flashback-operator.leaseName" . }}
{{- $key := .Values.sharding.key }}
{{- $shards := .Values.sharding.shards | default list }}
{{- $all := list }}
{{- if $shards }}
{{- $all = append $all (dict "name" $fullname "lease" $lease "selector" (printf "%s notin (%s)" $key (join "," $shards)) "labels" (dict "flashback.tech/operator-shard" "default") "selectorLabels" (dict)) }}
{{- range $shards }}
{{- $labels := dict "flashback.tech/operator-shard" . }}
{{- $all = append $all (dict "name" (printf "%s-%s" $fullname . | trunc 63 | trimSuffix "-") "lease" (printf "%s-%s" $lease . | trunc 253 | trimSuffix "-") "selector" (printf "%s in (%s)" $key .) "labels" $labels "selectorLabels" $labels) }}
{{- end }}
{{- else }}
{{- $all = append $all (dict "name" $fullname "lease" $lease "selector" "" "labels" (dict) "selectorLabels" (dict)) }}
{{- end }}
{{- toYaml $all }}
{{- end }}

{{/*
The operator's kinds, as resources of the flashback.tech API group: one line per kind. The
operator's RBAC and the roles aggregated to admin, edit and view follow this list.
*/}}
{{- define "flashback-operator.kinds" -}}
- flashbackrepositories
- flashbackaccesskeys
- flashbackbuckets
{{- end }}

{{/* The status subresources of the operator's kinds. */}}
{{- define "flashback-operator.kindStatuses" -}}
{{- range include "flashback-operator.kinds" . | fromYamlArray }}
- {{ . }}/status
{{- end }}
{{- end }}

{{/*
Rules on the namespaces the operator watches: its resources and their status, the Secrets
they name (metadata watched, the referenced ones read), the Secrets FlashbackAccessKeys write
(unless accessKeys.enabled is false), and the Events it records.
*/}}
{{- define "flashback-operator.watchRules" -}}
- apiGroups: ["flashback.tech"]
  resources: {{ include "flashback-operator.kinds" . | fromYamlArray | toJson }}
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["flashback.tech"]
  resources: {{ include "flashback-operator.kindStatuses" . | fromYamlArray | toJson }}
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
{{- if or .Values.sessions.enabled .Values.accessKeys.enabled }}
# Sessions: a credentials Secret with a refreshToken gets a Secret beside it,
# `<name>-session` of type flashback.tech/session, created once and updated at every
# renewal (a name cannot limit `create`, and the names are the tenants' own). FlashbackAccessKeys
# write theirs with the same two verbs.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "update"]
{{- end }}
{{- if .Values.accessKeys.enabled }}
# FlashbackAccessKeys: the Secret a key is written into is deleted with its key. The
# operator writes only a Secret whose ownerReference names the key object, and reads it
# (get, above) before every write.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["delete"]
{{- end }}
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
{{- $shards := .Values.sharding.shards | default list }}
{{- if $shards }}
{{- if ne (len $shards) (len (uniq $shards)) }}
{{- fail (printf "sharding.shards names a shard twice: %s" (join ", " $shards)) }}
{{- end }}
{{- if has "default" $shards }}
{{- fail "sharding.shards cannot name a shard \"default\": the release's own Deployment is the default shard, serving objects whose label names no listed shard" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if eq .name "FLASHBACK_SELECTOR" }}
{{- fail "sharding.shards gives each Deployment its own FLASHBACK_SELECTOR: remove it from extraEnv" }}
{{- end }}
{{- end }}
{{- /* Names cut to their limit could make two shards one Deployment, or one Lease. */}}
{{- $names := list }}
{{- $leases := list }}
{{- range include "flashback-operator.shards" . | fromYamlArray }}
{{- $names = append $names .name }}
{{- $leases = append $leases .lease }}
{{- end }}
{{- if ne (len $names) (len (uniq $names)) }}
{{- fail (printf "sharding.shards: the Deployment names %s are cut to 63 characters and coincide; shorten fullnameOverride (or the release name) or the shard names" (join ", " $names)) }}
{{- end }}
{{- if ne (len $leases) (len (uniq $leases)) }}
{{- fail (printf "sharding.shards: the Lease names %s are cut to 253 characters and coincide; shorten leaderElection.leaseName or the shard names" (join ", " $leases)) }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.hostNetwork }}
{{- fail "networkPolicy.enabled has no effect with hostNetwork: a NetworkPolicy does not apply to pods in the node's network; turn one of them off" }}
{{- end }}
{{- end }}
