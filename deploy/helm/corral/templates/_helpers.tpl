{{- define "corral.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "corral.fullname" -}}
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

{{- define "corral.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "corral.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: corral
{{- end }}

{{/* Selector labels of one component: include "corral.selectorLabels" (list . "web") */}}
{{- define "corral.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "corral.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "corral.componentLabels" -}}
{{- $ := index . 0 -}}
{{ include "corral.labels" $ }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "corral.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "corral.secretName" -}}
{{- default (include "corral.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The environment of every Corral container. */}}
{{- define "corral.env" -}}
- name: PORTAL_DEBUG
  value: "false"
- name: CORRAL_VAR_DIR
  value: /app/var
- name: PORTAL_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ include "corral.secretName" . }}, key: secret-key}}
{{- if .Values.postgresql.enabled }}
- name: CORRAL_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-postgresql" .Release.Name) .Values.postgresql.auth.existingSecret }}
      key: {{ .Values.postgresql.auth.secretKeys.userPasswordKey }}
- name: PORTAL_DATABASE_URL
  value: {{ printf "postgresql://%s:$(CORRAL_DATABASE_PASSWORD)@%s-postgresql:5432/%s" .Values.postgresql.auth.username .Release.Name .Values.postgresql.auth.database | quote }}
{{- else }}
- name: PORTAL_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ include "corral.secretName" . }}, key: database-url}}
{{- end }}
{{- if .Values.redis.enabled }}
- name: CORRAL_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-redis" .Release.Name) .Values.redis.auth.existingSecret }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: PORTAL_REDIS_URL
  value: {{ printf "redis://:$(CORRAL_REDIS_PASSWORD)@%s-redis-master:6379/0" .Release.Name | quote }}
{{- else }}
- name: PORTAL_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ include "corral.secretName" . }}, key: redis-url}}
{{- end }}
- name: PORTAL_ENCRYPTION_KEYS
  valueFrom: {secretKeyRef: {name: {{ include "corral.secretName" . }}, key: encryption-keys, optional: true}}
- name: PORTAL_LDAP_BIND_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "corral.secretName" . }}, key: ldap-bind-password, optional: true}}
- name: PORTAL_ALLOWED_HOSTS
  value: {{ join "," .Values.config.allowedHosts | quote }}
- name: PORTAL_CSRF_TRUSTED_ORIGINS
  value: {{ join "," .Values.config.csrfTrustedOrigins | quote }}
{{- with .Values.config.externalUrl }}
- name: PORTAL_EXTERNAL_URL
  value: {{ . | quote }}
{{- end }}
- name: PORTAL_SSL_REDIRECT
  value: {{ .Values.config.sslRedirect | quote }}
- name: PORTAL_SECURE_COOKIES
  value: {{ .Values.config.secureCookies | quote }}
{{- with .Values.config.trustedProxies }}
- name: PORTAL_TRUSTED_PROXIES
  value: {{ join "," . | quote }}
{{- end }}
- name: PORTAL_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
{{- with .Values.config.ldap }}
{{- if .serverUri }}
- name: PORTAL_LDAP_SERVER_URI
  value: {{ .serverUri | quote }}
- name: PORTAL_LDAP_BIND_DN
  value: {{ .bindDn | quote }}
- name: PORTAL_LDAP_USER_SEARCH_BASE
  value: {{ .userSearchBase | quote }}
- name: PORTAL_LDAP_GROUP_SEARCH_BASE
  value: {{ .groupSearchBase | quote }}
{{- end }}
{{- end }}
- name: CORRAL_WATCHER_SHARDS
  value: {{ .Values.watcher.replicas | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every Corral pod. */}}
{{- define "corral.podSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: var
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- end }}

{{- define "corral.volumeMounts" -}}
volumeMounts:
  - {name: var, mountPath: /app/var}
  - {name: tmp, mountPath: /tmp}
{{- end }}

{{/* The exec liveness probe of worker, beat and watcher: include "corral.aliveProbe" (list . "worker") */}}
{{- define "corral.aliveProbe" -}}
{{- $ := index . 0 -}}
livenessProbe:
  exec:
    command: ["python", "manage.py", "alive", "--component", {{ index . 1 | quote }}, "--max-age", {{ $.Values.liveness.maxAge | quote }}]
  initialDelaySeconds: {{ $.Values.liveness.maxAge }}
  periodSeconds: {{ $.Values.liveness.periodSeconds }}
  timeoutSeconds: {{ $.Values.liveness.timeoutSeconds }}
  failureThreshold: {{ $.Values.liveness.failureThreshold }}
{{- end }}

{{/* nodeSelector / tolerations / affinity of a component's values */}}
{{- define "corral.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
