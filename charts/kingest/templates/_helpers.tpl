{{/* Names, labels and images shared by the templates. */}}

{{- define "kingest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kingest.fullname" -}}
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

{{- define "kingest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kingest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kingest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kingest.labels" -}}
helm.sh/chart: {{ include "kingest.chart" . }}
{{ include "kingest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kingest
{{- end }}

{{- define "kingest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kingest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "kingest.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}
{{- end }}

{{- define "kingest.image" -}}
{{- include "kingest.imageRef" (dict "repository" .Values.image.repository "tag" .Values.image.tag "digest" .Values.image.digest "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "kingest.runnerImage" -}}
{{- $runner := .Values.runner.image }}
{{- include "kingest.imageRef" (dict "repository" (default .Values.image.repository $runner.repository) "tag" (default .Values.image.tag $runner.tag) "digest" (default .Values.image.digest $runner.digest) "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/*
The operator's RBAC rules, exactly as the operator declares them (kingest.operator.rbac,
copied to files/operator-rules.yaml; a test fails when the two differ).
`kingest.clusterRules` are those on cluster-scoped resources; `kingest.namespacedRules` the rest.
*/}}
{{- define "kingest.clusterScopedResources" -}}
["customresourcedefinitions", "namespaces"]
{{- end }}

{{- define "kingest.clusterRules" -}}
{{- $clusterScoped := include "kingest.clusterScopedResources" . | fromYamlArray }}
{{- $rules := list }}
{{- range (.Files.Get "files/operator-rules.yaml" | fromYamlArray) }}
{{- if has (first .resources) $clusterScoped }}
{{- /* kopf lists and watches namespaces only to resolve a namespace list, never when it
watches every namespace: there the rule would be a right the operator never uses. */}}
{{- if or $.Values.watchNamespaces (ne (first .resources) "namespaces") }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{- define "kingest.namespacedRules" -}}
{{- $clusterScoped := include "kingest.clusterScopedResources" . | fromYamlArray }}
{{- $rules := list }}
{{- range (.Files.Get "files/operator-rules.yaml" | fromYamlArray) }}
{{- if not (has (first .resources) $clusterScoped) }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The runner defaults as one JSON object, for KINGEST_RUNNER_DEFAULTS. */}}
{{- define "kingest.runnerDefaults" -}}
{{- dict "resources" .Values.runner.resources "securityContext" .Values.runner.securityContext | toJson }}
{{- end }}
