{{/* Names: "<release>-user-org-service", or the release name when it already says so. */}}
{{- define "uos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "uos.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "uos.labels" -}}
{{ include "uos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "uos.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* More than one admin-api pod at a time (a fixed count or an autoscaler). */}}
{{- define "uos.multiReplica" -}}
{{- if or .Values.adminApi.autoscaling.enabled (gt (int .Values.adminApi.replicas) 1) }}true{{ end -}}
{{- end -}}

{{/*
Settings that only fail at start-up otherwise: stop at render time with the reason instead of
leaving pods in a crash loop.
*/}}
{{- define "uos.checks" -}}
{{- $c := .Values.config -}}
{{- $s := .Values.secrets -}}
{{- $vault := $c.vault | default dict -}}
{{- $webhooks := $c.webhooks | default dict -}}
{{- $_ := required "secrets.database.name: the Secret with the PostgreSQL URL of the service role is required (pods cannot share a SQLite file)" $s.database.name -}}
{{- if include "uos.multiReplica" . -}}
{{- if not $s.redis.name -}}
{{- fail "secrets.redis.name: more than one admin-api replica needs Redis for lockouts, one-time tokens, revocations and rate limits" -}}
{{- end -}}
{{- if not $vault.address -}}
{{- fail "config.vault.address: more than one admin-api replica needs Vault/OpenBao Transit keys (key files would differ per pod)" -}}
{{- end -}}
{{- end -}}
{{- if ne (empty $vault.address) (empty $s.vaultToken.name) -}}
{{- fail "config.vault.address and secrets.vaultToken.name go together" -}}
{{- end -}}
{{- if and $webhooks.urls (not $s.webhooksSecret.name) -}}
{{- fail "config.webhooks.urls needs secrets.webhooksSecret.name (the HMAC key of the deliveries)" -}}
{{- end -}}
{{- if and $s.smtpPassword.name (not $c.smtp) -}}
{{- fail "secrets.smtpPassword.name is set but config.smtp is not" -}}
{{- end -}}
{{- if .Values.reconciler.enabled -}}
{{- $repo := ($c.declarative | default dict).repo | default "" -}}
{{- if not $repo -}}
{{- fail "config.declarative.repo: the reconciler needs the config repo (or set reconciler.enabled=false)" -}}
{{- end -}}
{{- if and $s.declarativeToken.name $s.declarativeSsh.name -}}
{{- fail "secrets.declarativeToken and secrets.declarativeSsh: a token or an SSH key, not both" -}}
{{- end -}}
{{- /* The reconciler's own test for an ssh repo (crates/uos-app/src/reconciler.rs). */ -}}
{{- if and (or (hasPrefix "ssh://" $repo) (and (contains "@" $repo) (contains ":" $repo))) (not $s.declarativeSsh.name) -}}
{{- fail "secrets.declarativeSsh.name: an ssh config repo needs the private key and the pinned host key (known_hosts)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The non-secret configuration as TOML. Helm reads every number in values as a float and its
toToml writes 30 as 30.0 (and 1000000 as 1e+06), which the service's integer keys refuse, so
the file is written here: plain keys first, then sub-tables, as TOML requires.
*/}}
{{- define "uos.toml" -}}
{{- $prefix := .prefix -}}
{{- range $k, $v := .table }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "uos.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}

[{{ $prefix }}{{ $k }}]
{{- include "uos.toml" (dict "table" $v "prefix" (printf "%s%s." $prefix $k)) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "uos.tomlValue" -}}
{{- if kindIs "string" . -}}
{{ toJson . }}
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "uos.tomlValue" $e }}{{ end }}]
{{- else -}}
{{- fail (printf "config: %v (%s) cannot be written as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* Both pods run as the image's numeric user, with a read-only root and no privileges. */}}
{{- define "uos.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
# Group-owns the emptyDir and the mounted Secret files, so the user can write and read them.
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "uos.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "uos.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end -}}

{{/*
The variables every process gets: the config file, the data directory and the secrets both the
admin-api and the reconciler need (each builds the whole service, so each opens every adapter).
*/}}
{{- define "uos.commonEnv" -}}
{{- $s := .Values.secrets -}}
- name: UOS_CONFIG
  value: /etc/uos/config.toml
- name: UOS_DATA_DIR
  value: /var/lib/uos
{{ include "uos.secretEnv" (dict "env" "UOS_DATABASE_URL" "name" $s.database.name "key" $s.database.key) }}
{{- /*
Both binaries bring the schema up to date at start-up (a no-op after the migration hook), and
sqlx's first statement there creates its bookkeeping table if missing, which needs CREATE on the
schema: a privilege the service role does not have. So the owner's URL goes to them as well.
*/}}
{{- with $s.migrationDatabase.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_MIGRATION_DATABASE_URL" "name" . "key" $s.migrationDatabase.key) }}
{{- end }}
{{- with $s.redis.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_REDIS_URL" "name" . "key" $s.redis.key) }}
{{- end }}
{{- with $s.vaultToken.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_VAULT__TOKEN" "name" . "key" $s.vaultToken.key) }}
{{- end }}
{{- with $s.smtpPassword.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_SMTP__PASSWORD" "name" . "key" $s.smtpPassword.key) }}
{{- end }}
{{- with $s.webhooksSecret.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_WEBHOOKS__SECRET" "name" . "key" $s.webhooksSecret.key) }}
{{- end }}
{{- with $s.objectStore.name }}
{{ include "uos.secretEnv" (dict "env" "UOS_OBJECT_STORE__ACCESS_KEY_ID" "name" . "key" $s.objectStore.accessKeyIdKey) }}
{{ include "uos.secretEnv" (dict "env" "UOS_OBJECT_STORE__SECRET_ACCESS_KEY" "name" . "key" $s.objectStore.secretAccessKeyKey) }}
{{- end }}
{{- range $provider, $ref := $s.oidcClientSecrets }}
{{ include "uos.secretEnv" (dict "env" (printf "UOS_OIDC_PROVIDERS__%s__CLIENT_SECRET" (upper $provider)) "name" $ref.name "key" $ref.key) }}
{{- end }}
{{- end -}}

{{/* Restarts pods when the configuration they read changes. */}}
{{- define "uos.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{- define "uos.dnsEgress" -}}
# Name resolution, whatever else is restricted.
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}
