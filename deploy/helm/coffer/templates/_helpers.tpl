{{/* Chart name, release full name (at most 63 characters: a DNS label), labels. */}}
{{- define "coffer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coffer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "coffer.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "coffer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coffer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The server pods (the migration Job's pods share name and instance, not the component). */}}
{{- define "coffer.serverSelectorLabels" -}}
{{ include "coffer.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "coffer.labels" -}}
{{ include "coffer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "coffer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "coffer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "coffer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "coffer.databaseSecret" -}}
{{- default (printf "%s-database" (include "coffer.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{- define "coffer.scheme" -}}
{{- if .Values.tls.enabled -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* The database settings, for the server and the migration Job. */}}
{{- define "coffer.databaseEnv" -}}
- name: COFFER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "coffer.databaseSecret" . }}
      key: {{ .Values.database.existingSecretKey }}
- name: COFFER_DB_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
{{- end -}}

{{/* The seal's settings, for the server only (migrating needs no key). */}}
{{- define "coffer.sealEnv" -}}
- name: COFFER_SEAL
  value: {{ .Values.seal.type | quote }}
{{- if eq .Values.seal.type "pkcs11" }}
- name: COFFER_PKCS11_MODULE
  value: {{ required "seal.pkcs11.module is required with seal.type=pkcs11" .Values.seal.pkcs11.module | quote }}
{{- if .Values.seal.pkcs11.tokenLabel }}
- name: COFFER_PKCS11_TOKEN_LABEL
  value: {{ .Values.seal.pkcs11.tokenLabel | quote }}
{{- else }}
- name: COFFER_PKCS11_SLOT
  value: {{ required "seal.pkcs11.tokenLabel or seal.pkcs11.slot is required" .Values.seal.pkcs11.slot | quote }}
{{- end }}
- name: COFFER_PKCS11_KEY_LABEL
  value: {{ .Values.seal.pkcs11.keyLabel | quote }}
- name: COFFER_PKCS11_PIN_FILE
  value: /etc/coffer/pkcs11/pin
{{- end }}
{{- end -}}

{{/* The seal's volumes and their mounts. */}}
{{- define "coffer.sealVolumes" -}}
{{- if eq .Values.seal.type "pkcs11" -}}
- name: pkcs11-pin
  secret:
    secretName: {{ required "seal.pkcs11.pinSecret.name is required with seal.type=pkcs11" .Values.seal.pkcs11.pinSecret.name }}
    defaultMode: 0400
    items:
      - key: {{ .Values.seal.pkcs11.pinSecret.key }}
        path: pin
{{- with .Values.seal.pkcs11.moduleVolume }}
- name: pkcs11-module
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "coffer.sealMounts" -}}
{{- if eq .Values.seal.type "pkcs11" -}}
- name: pkcs11-pin
  mountPath: /etc/coffer/pkcs11
  readOnly: true
{{- if .Values.seal.pkcs11.moduleVolume }}
- name: pkcs11-module
  mountPath: {{ .Values.seal.pkcs11.moduleMountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "coffer.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "coffer.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}
