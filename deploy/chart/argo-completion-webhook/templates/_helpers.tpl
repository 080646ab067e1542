{{/*
fullname names the webhook's objects and is the value of their app.kubernetes.io/name label:
argo-completion-webhook for a release of that name, as deploy/ names them.
*/}}
{{- define "acw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
repairName names the repair's objects: fullname with -webhook replaced by -repair
(argo-completion-repair, as in deploy/), or fullname-repair.
*/}}
{{- define "acw.repairName" -}}
{{- $f := include "acw.fullname" . -}}
{{- printf "%s-repair" (trimSuffix "-webhook" $f) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* servingCertificate names the serving Certificate and its Secret. */}}
{{- define "acw.servingCertificate" -}}
{{- printf "%s-serving" (include "acw.fullname" .) -}}
{{- end -}}

{{/* image is the webhook's image reference; the repair runs the same binary. */}}
{{- define "acw.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* repairApplies says whether the repair patches: only with repair.apply in enforce mode. */}}
{{- define "acw.repairApplies" -}}
{{- if and .Values.repair.apply (eq .Values.mode "enforce") }}true{{ end -}}
{{- end -}}

{{/* podPlacement renders nodeSelector and tolerations, shared by the webhook and the repair. */}}
{{- define "acw.podPlacement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* podSecurityContext is the restricted pod security context of both pods. */}}
{{- define "acw.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* containerSecurityContext is the restricted container security context of both containers. */}}
{{- define "acw.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* validate fails the render on combinations the binary or cert-manager would refuse later. */}}
{{- define "acw.validate" -}}
{{- if and .Values.archiveLabelSelector (not .Values.archive) -}}
{{- fail "archiveLabelSelector is the controller's persistence.archiveLabelSelector: set archive: true with it" -}}
{{- end -}}
{{- if and .Values.certificate.issuerRef.name (not (has .Values.certificate.issuerRef.kind (list "Issuer" "ClusterIssuer"))) -}}
{{- fail (printf "certificate.issuerRef.kind must be Issuer or ClusterIssuer, got %q" .Values.certificate.issuerRef.kind) -}}
{{- end -}}
{{- if has .Release.Namespace .Values.namespaces -}}
{{- fail (printf "namespaces must not list the release namespace %s: the webhook is never called for its own namespace" .Release.Namespace) -}}
{{- end -}}
{{- end -}}
