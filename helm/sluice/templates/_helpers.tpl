{{/* ---------------------------------------------------------------------
Names
--------------------------------------------------------------------- */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart>, or the release name when it holds the chart
name. Kept to 50 characters so suffixes (-executor-regular, -scheduler) fit. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.gateway.fullname" -}}
{{- printf "%s-gateway" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.scheduler.fullname" -}}
{{- printf "%s-scheduler" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.executor.fullname" -}}
{{- printf "%s-executor" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------
Labels. Call with (dict "ctx" $ "component" "gateway").
--------------------------------------------------------------------- */}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- with .pool }}
sluice/pool: {{ . }}
{{- end }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" .ctx }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------------
Executor pools: the spot/regular split, in integer math.

"sluice.executorPools" returns a YAML map pool -> {replicas, minReplicas,
maxReplicas, percent}; read it with `include ... | fromYaml`. Without
autoscaling a pool gets its share of executors.replicas, rounded down for
spot (regular gets the rest): 10 at 70 % -> 7 spot, 3 regular. With
autoscaling, maxReplicas is split the same way and each pool's minimum is
its share of minReplicas, at least 1. A pool is rendered only when its count
(replicas, or maxReplicas with autoscaling) is above 0.
--------------------------------------------------------------------- */}}

{{- define "sluice.split" -}}
{{- $total := int .total -}}
{{- $spot := div (mul $total (int .percent)) 100 -}}
spot: {{ $spot }}
regular: {{ sub $total $spot }}
{{- end -}}

{{- define "sluice.executorPools" -}}
{{- $ex := .Values.executors -}}
{{- $pct := int $ex.spotPercent -}}
{{- if or (lt $pct 0) (gt $pct 100) -}}
{{- fail (printf "executors.spotPercent must be between 0 and 100, got %v" $ex.spotPercent) -}}
{{- end -}}
{{- $percents := dict "spot" $pct "regular" (sub 100 $pct) -}}
{{- if $ex.autoscaling.enabled -}}
{{- $min := int $ex.autoscaling.minReplicas -}}
{{- $max := int $ex.autoscaling.maxReplicas -}}
{{- if or (lt $min 1) (lt $max $min) -}}
{{- fail (printf "executors.autoscaling needs 1 <= minReplicas <= maxReplicas, got %v and %v" $min $max) -}}
{{- end -}}
{{- $mins := include "sluice.split" (dict "total" $min "percent" $pct) | fromYaml -}}
{{- $maxs := include "sluice.split" (dict "total" $max "percent" $pct) | fromYaml -}}
{{- range $pool := list "spot" "regular" }}
{{- $poolMax := int (index $maxs $pool) }}
{{- if gt $poolMax 0 }}
{{ $pool }}:
  percent: {{ index $percents $pool }}
  maxReplicas: {{ $poolMax }}
  minReplicas: {{ min $poolMax (max 1 (int (index $mins $pool))) }}
{{- end }}
{{- end }}
{{- else -}}
{{- $total := int $ex.replicas -}}
{{- if lt $total 0 -}}
{{- fail "executors.replicas must not be negative" -}}
{{- end -}}
{{- $counts := include "sluice.split" (dict "total" $total "percent" $pct) | fromYaml -}}
{{- range $pool := list "spot" "regular" }}
{{- $n := int (index $counts $pool) }}
{{- if gt $n 0 }}
{{ $pool }}:
  percent: {{ index $percents $pool }}
  replicas: {{ $n }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------
Scheduling
--------------------------------------------------------------------- */}}

{{/* A required node affinity term that avoids every spot label (NotIn also
matches nodes without the label). */}}
{{- define "sluice.antiSpotNodeAffinity" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          {{- range .Values.spot.nodeLabels }}
          - key: {{ .key }}
            operator: NotIn
            values: {{ toYaml .values | nindent 14 }}
          {{- end }}
{{- end -}}

{{/* Node affinity of the spot pool: one term per spot label (terms are ORed). */}}
{{- define "sluice.spotNodeAffinity" -}}
{{- $mode := .Values.executors.pools.spot.nodeAffinity -}}
nodeAffinity:
{{- if eq $mode "required" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      {{- range .Values.spot.nodeLabels }}
      - matchExpressions:
          - key: {{ .key }}
            operator: In
            values: {{ toYaml .values | nindent 14 }}
      {{- end }}
{{- else if eq $mode "preferred" }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- range .Values.spot.nodeLabels }}
    - weight: 100
      preference:
        matchExpressions:
          - key: {{ .key }}
            operator: In
            values: {{ toYaml .values | nindent 14 }}
    {{- end }}
{{- else }}
{{- fail (printf "executors.pools.spot.nodeAffinity must be required or preferred, got %q" $mode) }}
{{- end }}
{{- end -}}

{{/* Preferred spreading of all executors over nodes. */}}
{{- define "sluice.executorPodAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "sluice.selectorLabels" (dict "ctx" . "component" "executor") | nindent 12 }}
{{- end -}}

{{/* ---------------------------------------------------------------------
Lifecycle
--------------------------------------------------------------------- */}}

{{/* preStop hook from {sleepSeconds, method}; empty when sleepSeconds is 0. */}}
{{- define "sluice.preStop" -}}
{{- $secs := int .sleepSeconds -}}
{{- if gt $secs 0 -}}
preStop:
{{- if eq .method "exec" }}
  exec:
    command: ["sleep", "{{ $secs }}"]
{{- else if eq .method "sleepAction" }}
  sleep:
    seconds: {{ $secs }}
{{- else }}
{{- fail (printf "preStop.method must be exec or sleepAction, got %q" .method) }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Grace period: the given one (checked), or preStop + drain + 15 s.
Call with (dict "given" X "preStop" N "drain" N "what" "gateway.shutdownTimeout"). */}}
{{- define "sluice.gracePeriod" -}}
{{- $floor := add (int .preStop) (int .drain) -}}
{{- if kindIs "invalid" .given -}}
{{- add $floor 15 -}}
{{- else if le (int .given) $floor -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed the preStop sleep plus %s (%v)" .given .what $floor) -}}
{{- else -}}
{{- int .given -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------
Secrets
--------------------------------------------------------------------- */}}

{{- define "sluice.secretName" -}}
{{- printf "%s-secrets" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "sluice.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* Value of a chart-managed secret key: the given value, else the one
already in the cluster (kept across upgrades), else a random one.
Call with (dict "ctx" $ "key" "cluster-secret" "given" "..." "length" 48). */}}
{{- define "sluice.secretValue" -}}
{{- if .given -}}
{{- .given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "sluice.secretName" .ctx) -}}
{{- $data := dig "data" (dict) $existing -}}
{{- if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Projected volume sources of the secret files mounted at /etc/sluice/secrets.
Call with (dict "ctx" $ "gateway" true|false). */}}
{{- define "sluice.secretSources" -}}
{{- $v := .ctx.Values -}}
{{- $own := include "sluice.secretName" .ctx -}}
{{- if .ctx.Values.executors.enabled }}
- secret:
    name: {{ default $own $v.clusterSecret.existingSecret }}
    items:
      - key: {{ ternary $v.clusterSecret.existingSecretKey "cluster-secret" (not (empty $v.clusterSecret.existingSecret)) }}
        path: cluster-secret
{{- end }}
{{- if .gateway }}
- secret:
    name: {{ default $own $v.auth.existingSecret }}
    items:
      - key: {{ ternary $v.auth.existingSecretKey "admin-password" (not (empty $v.auth.existingSecret)) }}
        path: admin-password
- secret:
    name: {{ default $own $v.metrics.existingSecret }}
    items:
      - key: {{ ternary $v.metrics.existingSecretKey "metrics-token" (not (empty $v.metrics.existingSecret)) }}
        path: metrics-token
{{- if include "sluice.catalogPassword" .ctx }}
- secret:
    name: {{ default $own $v.catalog.postgres.existingSecret }}
    items:
      - key: {{ ternary $v.catalog.postgres.existingSecretKey "catalog-password" (not (empty $v.catalog.postgres.existingSecret)) }}
        path: catalog-password
{{- end }}
{{- if and $v.catalog.postgres.url $v.catalog.postgres.caSecret }}
- secret:
    name: {{ $v.catalog.postgres.caSecret }}
    items:
      - key: {{ $v.catalog.postgres.caSecretKey }}
        path: catalog-ca.pem
{{- end }}
{{- end }}
{{- end -}}

{{/* Whether the gateway gets a PostgreSQL catalog password file. */}}
{{- define "sluice.catalogPassword" -}}
{{- with .Values.catalog.postgres }}{{ if and .url (or .password .existingSecret) }}true{{ end }}{{ end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------
Environment shared by the gateway and executors: log format, object stores.
--------------------------------------------------------------------- */}}

{{- define "sluice.hasConfigFile" -}}
{{- if .Values.objectStore.stores }}true{{ end -}}
{{- end -}}

{{- define "sluice.commonEnv" -}}
- name: SLUICE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- if include "sluice.hasConfigFile" . }}
- name: SLUICE_CONFIG
  value: /etc/sluice/config/stores.toml
{{- end }}
{{- with .Values.objectStore.s3 }}
{{- if .enabled }}
{{- with .endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .allowHttp }}
- name: AWS_ALLOW_HTTP
  value: "true"
{{- end }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* An env var only when the value is set (not null, not ""). */}}
{{- define "sluice.optionalEnv" -}}
{{- if not (or (kindIs "invalid" .value) (eq (toString .value) "")) -}}
- name: {{ .name }}
  value: {{ .value | toString | quote }}
{{- end -}}
{{- end -}}

{{- define "sluice.httpScheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{- define "sluice.localExecutors" -}}
{{- if kindIs "invalid" .Values.gateway.localExecutors -}}
{{- ternary 0 1 .Values.executors.enabled -}}
{{- else -}}
{{- int .Values.gateway.localExecutors -}}
{{- end -}}
{{- end -}}
