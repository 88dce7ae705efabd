{{/* Names and labels. */}}
{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "relay.fullname" -}}
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

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: genesys-relay
{{- end -}}

{{/* Labels of one part: (dict "root" $ "component" "worker") */}}
{{- define "relay.componentLabels" -}}
{{ include "relay.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relay.componentSelectorLabels" -}}
{{ include "relay.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "relay.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Settings the chart derives itself: set in `config` they would disagree with what the chart
computes from them (grace period, ports, scaling bound), so they are refused.
*/}}
{{- define "relay.checkConfig" -}}
{{- $derived := dict
  "RELAY_HTTP_ADDR" "ports.http"
  "RELAY_ADMIN_ADDR" "ports.admin"
  "RELAY_SHUTDOWN_TIMEOUT" "shutdownTimeoutSeconds"
  "RELAY_TOPIC_PARTITIONS" "topics.partitions"
  "RELAY_GENESYS_RATE_LIMIT" "worker.genesysRequestsPerMinute / listen.genesysRequestsPerMinute"
  "RELAY_LISTEN_MAX_CHANNELS" "listen.channelsPerClient" -}}
{{- range $key, $from := $derived -}}
{{- if or (hasKey $.Values.config $key) (hasKey $.Values.ingress.env $key) (hasKey $.Values.worker.env $key) (hasKey $.Values.listen.env $key) -}}
{{- fail (printf "%s is derived by the chart from %s; set that value instead" $key $from) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.config -}}
{{- if not (hasPrefix "RELAY_" $key) -}}
{{- fail (printf "config.%s: only RELAY_* settings belong in config" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The worker bound: how many worker processes the Genesys budget allows.
floor((org limit - listen replicas x listen budget) / worker budget), at most the partitions.
*/}}
{{- define "relay.genesysRemainingForWorkers" -}}
{{- $listen := 0 -}}
{{- if .Values.listen.enabled -}}
{{- $listen = mul (int .Values.listen.replicas) (int .Values.listen.genesysRequestsPerMinute) -}}
{{- end -}}
{{- sub (int .Values.genesys.orgRequestsPerMinute) $listen -}}
{{- end -}}

{{- define "relay.workerMaxReplicas" -}}
{{- $perWorker := int .Values.worker.genesysRequestsPerMinute -}}
{{- if lt $perWorker 1 -}}
{{- fail "worker.genesysRequestsPerMinute must be at least 1" -}}
{{- end -}}
{{- $byBudget := div (int (include "relay.genesysRemainingForWorkers" .)) $perWorker -}}
{{- min (int .Values.topics.partitions) $byBudget -}}
{{- end -}}

{{/* Seconds between SIGTERM and SIGKILL: above the relay's worst-case stop. */}}
{{- define "relay.gracePeriod" -}}
{{- $root := .root -}}
{{- add (int .preStop) (int $root.Values.shutdownTimeoutSeconds) 10 10 (int $root.Values.graceMarginSeconds) -}}
{{- end -}}

{{/*
The pod template shared by the three parts:
(dict "root" $ "component" "worker" "command" "worker" "values" .Values.worker "env" (dict ...) "preStop" 0)
*/}}
{{- define "relay.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .values -}}
metadata:
  labels:
    {{- include "relay.componentSelectorLabels" . | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "relay.serviceAccountName" $root }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ include "relay.gracePeriod" (dict "root" $root "preStop" .preStop) }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: relay
      image: {{ include "relay.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .command | quote }}]
      ports:
        {{- if eq .component "ingress" }}
        - name: http
          containerPort: {{ $root.Values.ports.http }}
          protocol: TCP
        {{- end }}
        - name: admin
          containerPort: {{ $root.Values.ports.admin }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "relay.fullname" $root }}
        {{- range $root.Values.extraEnvFromSecrets }}
        - secretRef:
            name: {{ . | quote }}
        {{- end }}
      env:
        {{- range $root.Values.secretEnv }}
        {{- if or (not .components) (has $.component .components) }}
        - name: {{ .name }}
          valueFrom:
            secretKeyRef:
              name: {{ .secretName | quote }}
              key: {{ .key | quote }}
              {{- if .optional }}
              optional: true
              {{- end }}
        {{- end }}
        {{- end }}
        {{- range $name, $value := .env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
        {{- range $name, $value := $v.env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
      {{- if gt (int .preStop) 0 }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", {{ .preStop | toString | quote }}]
      {{- end }}
      startupProbe:
        httpGet: {path: /healthz, port: admin}
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: admin}
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: admin}
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      {{- with $root.Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .tlsSecretName }}
      volumeMounts:
        - name: tls
          mountPath: /etc/genesys-relay/tls
          readOnly: true
      {{- end }}
  {{- if .tlsSecretName }}
  volumes:
    - name: tls
      secret:
        secretName: {{ .tlsSecretName | quote }}
  {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range $v.topologySpreadConstraints }}
    - {{ toYaml . | nindent 6 | trim }}
      labelSelector:
        matchLabels:
          {{- include "relay.componentSelectorLabels" $ | nindent 10 }}
    {{- end }}
  {{- end }}
{{- end -}}
