{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "vhi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name: also the Service name, so the serving certificate is for
<fullname>.<namespace>.svc. Truncated to leave room for the "-selfsigned" suffix.
*/}}
{{- define "vhi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vhi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vhi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vhi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vhi.labels" -}}
helm.sh/chart: {{ include "vhi.chart" . }}
{{ include "vhi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: admission-webhook
{{- end -}}

{{- define "vhi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vhi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vhi.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* DNS name the API server uses to reach the webhook; the serving certificate must cover it. */}}
{{- define "vhi.serviceHost" -}}
{{- printf "%s.%s.svc" (include "vhi.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
Name of the Secret holding tls.crt / tls.key. The chart's own (selfSigned) and cert-manager's
have different names, so that switching modes on upgrade never has Helm delete the Secret that
cert-manager just wrote.
*/}}
{{- define "vhi.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.secret.name is required when certificates.mode is secret" .Values.certificates.secret.name -}}
{{- else if eq .Values.certificates.mode "selfSigned" -}}
{{- printf "%s-chart-tls" (include "vhi.fullname" .) -}}
{{- else -}}
{{- printf "%s-tls" (include "vhi.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
selfSigned mode: the CA and serving certificate, as a dict of base64 strings
{"ca.crt", "tls.crt", "tls.key"}, rendered as JSON.

They are taken from the existing Secret when the cluster has one (so an upgrade keeps them and
the caBundle never changes under running pods), else generated. `lookup` returns nothing in
`helm template` and client-side dry runs, which therefore always show new ones.

The Secret and the MutatingWebhookConfiguration are rendered from different files but must carry
the same CA, so the result is computed once per render and kept in .Values (templates of one chart
share that map; the schema forbids users from setting the key).
*/}}
{{- define "vhi.selfSignedCerts" -}}
{{- if not (hasKey .Values "__vhiSelfSignedCerts") -}}
{{- $certs := dict -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "vhi.tlsSecretName" .) -}}
{{- $data := dict -}}
{{- if $existing -}}
{{- $data = $existing.data | default dict -}}
{{- end -}}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") -}}
{{- $_ := set $certs "ca.crt" (index $data "ca.crt") -}}
{{- $_ := set $certs "tls.crt" (index $data "tls.crt") -}}
{{- $_ := set $certs "tls.key" (index $data "tls.key") -}}
{{- else -}}
{{- $days := int .Values.certificates.selfSigned.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "vhi.fullname" .)) $days -}}
{{- $svc := include "vhi.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $cert := genSignedCert (include "vhi.serviceHost" .) nil $dns $days $ca -}}
{{- $_ := set $certs "ca.crt" ($ca.Cert | b64enc) -}}
{{- $_ := set $certs "tls.crt" ($cert.Cert | b64enc) -}}
{{- $_ := set $certs "tls.key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__vhiSelfSignedCerts" $certs -}}
{{- end -}}
{{- index .Values "__vhiSelfSignedCerts" | toJson -}}
{{- end -}}

{{/* The caBundle (base64 of PEM) for selfSigned and secret modes; empty for certManager. */}}
{{- define "vhi.caBundle" -}}
{{- if eq .Values.certificates.mode "selfSigned" -}}
{{- index (include "vhi.selfSignedCerts" . | fromJson) "ca.crt" -}}
{{- else if eq .Values.certificates.mode "secret" -}}
{{- $ca := required "certificates.secret.caBundle (the CA certificate, PEM or base64) is required when certificates.mode is secret" .Values.certificates.secret.caBundle | trim -}}
{{- if hasPrefix "-----BEGIN" $ca -}}
{{- printf "%s\n" $ca | b64enc -}}
{{- else -}}
{{- $b64 := $ca | replace "\n" "" | replace " " "" -}}
{{- if not (hasPrefix "-----BEGIN" (b64dec $b64 | trim)) -}}
{{- fail "certificates.secret.caBundle is neither a PEM certificate nor base64 of one" -}}
{{- end -}}
{{- $b64 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* cert-manager resource names. */}}
{{- define "vhi.certManager.issuerName" -}}
{{- if .Values.certificates.certManager.issuerRef.name -}}
{{- .Values.certificates.certManager.issuerRef.name -}}
{{- else -}}
{{- printf "%s-ca" (include "vhi.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The database match condition (docs/match-conditions.md): webhook.databaseMatchCondition.expression
when set, else the expression generated from the built-in templates (files/match-condition.cel,
`velero-hook-injector templates match-condition`), whose placeholder clause `n in []` becomes
the image names (last path segment) and imagePatterns of customTemplates, so that they widen it.
*/}}
{{- define "vhi.databaseMatchCondition" -}}
{{- $c := .Values.webhook.databaseMatchCondition -}}
{{- if $c.expression -}}
{{- $c.expression -}}
{{- else -}}
{{- $names := list -}}
{{- $patterns := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" (.Values.customTemplates | default "") -1 -}}
{{- $t := fromYaml $doc -}}
{{- if and $t (kindIs "map" $t.match) -}}
{{- /* A template of the wrong shape is refused by the server with the reason; skip it here. */ -}}
{{- if kindIs "slice" $t.match.images -}}
{{- range $t.match.images -}}
{{- $names = append $names (last (splitList "/" (toString .))) -}}
{{- end -}}
{{- end -}}
{{- if kindIs "slice" $t.match.imagePatterns -}}
{{- range $t.match.imagePatterns -}}
{{- $patterns = append $patterns (printf "n.matches(%s)" (toJson (toString .))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $extra := printf "n in %s" ($names | uniq | toJson) -}}
{{- if $patterns -}}
{{- $extra = printf "%s || %s" $extra (join " || " $patterns) -}}
{{- end -}}
{{- .Files.Get "files/match-condition.cel" | trim | replace "n in []" $extra -}}
{{- end -}}
{{- end }}
