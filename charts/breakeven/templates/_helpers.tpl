{{- define "breakeven.selectorLabels" -}}
app.kubernetes.io/name: breakeven
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "breakeven.labels" -}}
{{ include "breakeven.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "breakeven.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
The operator's RBAC rules (files/rules.yaml, generated from operator/breakeven/tools/deploy.py),
split by scope: "cluster" keeps the rules on cluster-scoped resources, "namespaced" the others.
Call with (dict "root" $ "scope" "cluster"|"namespaced"|"all").
*/}}
{{- define "breakeven.rules" -}}
{{- $cluster := list "nodes" "namespaces" "customresourcedefinitions" "clusterkopfpeerings" -}}
{{- $scope := .scope -}}
{{- $out := list -}}
{{- range $rule := (.root.Files.Get "files/rules.yaml" | fromYamlArray) -}}
{{- $keep := list -}}
{{- range $r := $rule.resources -}}
{{- $isCluster := has (first (splitList "/" $r)) $cluster -}}
{{- if or (eq $scope "all") (and (eq $scope "cluster") $isCluster) (and (eq $scope "namespaced") (not $isCluster)) -}}
{{- $keep = append $keep $r -}}
{{- end -}}
{{- end -}}
{{- if $keep -}}
{{- $out = append $out (dict "apiGroups" $rule.apiGroups "resources" $keep "verbs" $rule.verbs) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
