{{/* Common labels of every object. */}}
{{- define "alpr.labels" -}}
app.kubernetes.io/part-of: alpr
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* An image reference: repository:tag. */}}
{{- define "alpr.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Pod-level security context of the project's images (USER 10001 in the Dockerfile). */}}
{{- define "alpr.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context. */}}
{{- define "alpr.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* imagePullSecrets of a pod spec. */}}
{{- define "alpr.pullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* GOOGLE_APPLICATION_CREDENTIALS when a GCS key Secret is configured. */}}
{{- define "alpr.gcsEnv" -}}
{{- if .Values.gcs.keySecret }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: {{ printf "%s/%s" .Values.gcs.mountPath .Values.gcs.keyFile | quote }}
{{- end }}
{{- end -}}

{{/* The DB URL and password from the db Secret, as env entries; argument: dict "root" . "optional" bool. */}}
{{- define "alpr.dbEnv" -}}
- name: ALPR_DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.db.secretName }}
      key: {{ .root.Values.db.urlKey }}
      optional: {{ .optional }}
- name: ALPR_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.db.secretName }}
      key: {{ .root.Values.db.passwordKey }}
      optional: {{ .optional }}
{{- end -}}
