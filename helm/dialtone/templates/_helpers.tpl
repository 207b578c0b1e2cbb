{{/* The chart name, overridable. */}}
{{- define "dialtone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: the prefix of every resource. */}}
{{- define "dialtone.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every resource carries. */}}
{{- define "dialtone.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "dialtone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "edge"). */}}
{{- define "dialtone.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dialtone.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image of Dialtone's containers. */}}
{{- define "dialtone.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Names of the Secrets, created or given. */}}
{{- define "dialtone.nonceKeySecret" -}}
{{- default (printf "%s-nonce-key" (include "dialtone.fullname" .)) .Values.secrets.nonceKey.existingSecret -}}
{{- end -}}
{{- define "dialtone.credentialsKeySecret" -}}
{{- default (printf "%s-credentials-key" (include "dialtone.fullname" .)) .Values.secrets.credentialsKey.existingSecret -}}
{{- end -}}
{{- define "dialtone.apiTokensSecret" -}}
{{- default (printf "%s-api-tokens" (include "dialtone.fullname" .)) .Values.secrets.apiTokens.existingSecret -}}
{{- end -}}
{{/* The Secret holding the generated admin token in clear (no Dialtone pod mounts it). */}}
{{- define "dialtone.adminTokenSecret" -}}
{{- if .Values.secrets.apiTokens.existingSecret -}}
{{- .Values.secrets.apiTokens.existingSecret -}}
{{- else -}}
{{- printf "%s-admin-token" (include "dialtone.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The TURN REST API shared secret (coturn's static-auth-secret; the provisioning role
hands out credentials made with it). */}}
{{- define "dialtone.turnSecret" -}}
{{- default (printf "%s-turn-secret" (include "dialtone.fullname" .)) .Values.secrets.turnSecret.existingSecret -}}
{{- end -}}
{{/* Whether the chart runs coturn (and the provisioning role gets the shared secret). */}}
{{- define "dialtone.turnEnabled" -}}
{{- if and .Values.media.enabled .Values.media.coturn.enabled }}true{{ end -}}
{{- end -}}

{{/*
Environment of a dialtonectl container talking to the config API (the edge-group Job, the
media servers' registration): where the API is, over TLS when grpc.tls says so, and the
API token from `token` ({name, key}; an empty name: the chart's admin-token Secret).
Arguments: root, token.
*/}}
{{- define "dialtone.ctlEnv" -}}
{{- $root := .root -}}
{{- $fullname := include "dialtone.fullname" $root -}}
{{- if $root.Values.grpc.tls.secretName }}
# gRPC over TLS: the Secret's certificate must name {{ $fullname }}-config (and
# allow client authentication when client certificates are required).
- name: DIALTONE_SERVER
  value: "https://{{ $fullname }}-config:{{ $root.Values.config.grpcPort }}"
- name: DIALTONE_CA
  value: /etc/dialtone/grpc-tls/ca.crt
{{- if $root.Values.grpc.tls.requireClientCertificates }}
- name: DIALTONE_CERT
  value: /etc/dialtone/grpc-tls/tls.crt
- name: DIALTONE_KEY
  value: /etc/dialtone/grpc-tls/tls.key
{{- end }}
{{- else }}
- name: DIALTONE_SERVER
  value: "http://{{ $fullname }}-config:{{ $root.Values.config.grpcPort }}"
{{- end }}
- name: DIALTONE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ default (include "dialtone.adminTokenSecret" $root) .token.name }}
      key: {{ .token.key }}
{{- end -}}

{{/* etcd client endpoints, comma-separated: the bundled members or externalEtcd.endpoints. */}}
{{- define "dialtone.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
{{- $fullname := include "dialtone.fullname" . -}}
{{- $eps := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $scheme := ternary "https" "http" $.Values.etcd.tls.enabled -}}
{{- $eps = append $eps (printf "%s://%s-etcd-%d.%s-etcd-headless.%s.svc:%d" $scheme $fullname $i $fullname $.Release.Namespace (int $.Values.etcd.clientPort)) -}}
{{- end -}}
{{- join "," $eps -}}
{{- else -}}
{{- required "externalEtcd.endpoints is required when etcd.enabled is false" (join "," .Values.externalEtcd.endpoints) -}}
{{- end -}}
{{- end -}}

{{/* A SIP listener address, or `off` for port 0. */}}
{{- define "dialtone.sipListen" -}}
{{- if eq (int .) 0 -}}off{{- else -}}0.0.0.0:{{ . }}{{- end -}}
{{- end -}}

{{/* Environment shared by every Dialtone container: store, secrets, telemetry (each
workload sets its node id: the pod name, or a DaemonSet edge's Kubernetes node name). */}}
{{- define "dialtone.commonEnv" -}}
- name: DIALTONE_CONFIG
  value: /etc/dialtone/dialtone.toml
- name: DIALTONE_ETCD
  value: {{ include "dialtone.etcdEndpoints" . | quote }}
- name: DIALTONE_API_TOKENS
  value: /etc/dialtone/secrets/api-tokens/{{ .Values.secrets.apiTokens.key }}
{{- if .Values.grpc.tls.secretName }}
- name: DIALTONE_GRPC_TLS_CERT
  value: /etc/dialtone/grpc-tls/tls.crt
- name: DIALTONE_GRPC_TLS_KEY
  value: /etc/dialtone/grpc-tls/tls.key
{{- if .Values.grpc.tls.requireClientCertificates }}
- name: DIALTONE_GRPC_CLIENT_CA
  value: /etc/dialtone/grpc-tls/ca.crt
{{- end }}
{{- else if .Values.grpc.insecure }}
- name: DIALTONE_INSECURE_GRPC
  value: "true"
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.tls.enabled }}
- name: DIALTONE_ETCD_CA_FILE
  value: /etc/dialtone/etcd-tls/ca.crt
- name: DIALTONE_ETCD_CERT_FILE
  value: /etc/dialtone/etcd-tls/tls.crt
- name: DIALTONE_ETCD_KEY_FILE
  value: /etc/dialtone/etcd-tls/tls.key
{{- end }}
{{- if and (not .Values.etcd.enabled) .Values.externalEtcd.tls.enabled }}
- name: DIALTONE_ETCD_CA_FILE
  value: /etc/dialtone/etcd-tls/ca.crt
{{- if .Values.externalEtcd.tls.clientCertificate }}
- name: DIALTONE_ETCD_CERT_FILE
  value: /etc/dialtone/etcd-tls/tls.crt
- name: DIALTONE_ETCD_KEY_FILE
  value: /etc/dialtone/etcd-tls/tls.key
{{- end }}
{{- end }}
{{- if and (not .Values.etcd.enabled) .Values.externalEtcd.auth.secretName }}
- name: DIALTONE_ETCD_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalEtcd.auth.secretName }}
      key: username
- name: DIALTONE_ETCD_PASSWORD_FILE
  value: /etc/dialtone/etcd-auth/password
{{- end }}
{{- if .Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.telemetry.otlpEndpoint | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.telemetry.samplingRatio | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,k8s.pod.name=$(DIALTONE_NODE_ID)%s" .Release.Namespace (ternary (printf ",%s" .Values.telemetry.resourceAttributes) "" (ne .Values.telemetry.resourceAttributes "")) | quote }}
{{- with .Values.telemetry.headers.secretName }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.telemetry.headers.key }}
{{- end }}
{{- if .Values.telemetry.tls.secretName }}
- name: OTEL_EXPORTER_OTLP_CERTIFICATE
  value: /etc/dialtone/otlp-tls/ca.crt
{{- if .Values.telemetry.tls.clientCertificate }}
- name: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
  value: /etc/dialtone/otlp-tls/tls.crt
- name: OTEL_EXPORTER_OTLP_CLIENT_KEY
  value: /etc/dialtone/otlp-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes shared by every Dialtone pod. */}}
{{- define "dialtone.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "dialtone.fullname" . }}
- name: api-tokens
  secret:
    secretName: {{ include "dialtone.apiTokensSecret" . }}
    # The token file only, whatever else the Secret holds.
    items:
      - key: {{ .Values.secrets.apiTokens.key }}
        path: {{ .Values.secrets.apiTokens.key }}
- name: tmp
  emptyDir: {}
{{- if .Values.grpc.tls.secretName }}
- name: grpc-tls
  secret:
    secretName: {{ .Values.grpc.tls.secretName }}
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.tls.enabled }}
- name: etcd-tls
  secret:
    secretName: {{ include "dialtone.etcdTlsSecret" . }}
    # The CA and Dialtone's client certificate only, never the members' key.
    items:
      - key: ca.crt
        path: ca.crt
      - key: client.crt
        path: tls.crt
      - key: client.key
        path: tls.key
{{- end }}
{{- if and (not .Values.etcd.enabled) .Values.externalEtcd.tls.enabled }}
- name: etcd-tls
  secret:
    secretName: {{ required "externalEtcd.tls.secretName is required with externalEtcd.tls.enabled" .Values.externalEtcd.tls.secretName }}
{{- end }}
{{- if and (not .Values.etcd.enabled) .Values.externalEtcd.auth.secretName }}
- name: etcd-auth
  secret:
    secretName: {{ .Values.externalEtcd.auth.secretName }}
    items:
      - key: password
        path: password
{{- end }}
{{- if and .Values.telemetry.otlpEndpoint .Values.telemetry.tls.secretName }}
- name: otlp-tls
  secret:
    secretName: {{ .Values.telemetry.tls.secretName }}
{{- end }}
{{- end -}}

{{/* Mounts of the shared volumes. */}}
{{- define "dialtone.commonMounts" -}}
- name: config
  mountPath: /etc/dialtone/dialtone.toml
  subPath: dialtone.toml
  readOnly: true
- name: api-tokens
  mountPath: /etc/dialtone/secrets/api-tokens
  readOnly: true
- name: tmp
  mountPath: /var/lib/dialtone
{{- if .Values.grpc.tls.secretName }}
- name: grpc-tls
  mountPath: /etc/dialtone/grpc-tls
  readOnly: true
{{- end }}
{{- if or (and .Values.etcd.enabled .Values.etcd.tls.enabled) (and (not .Values.etcd.enabled) .Values.externalEtcd.tls.enabled) }}
- name: etcd-tls
  mountPath: /etc/dialtone/etcd-tls
  readOnly: true
{{- end }}
{{- if and (not .Values.etcd.enabled) .Values.externalEtcd.auth.secretName }}
- name: etcd-auth
  mountPath: /etc/dialtone/etcd-auth
  readOnly: true
{{- end }}
{{- if and .Values.telemetry.otlpEndpoint .Values.telemetry.tls.secretName }}
- name: otlp-tls
  mountPath: /etc/dialtone/otlp-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Liveness and readiness probes on the admin port: call with (dict "probes" ... "port" ...). */}}
{{- define "dialtone.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  initialDelaySeconds: {{ .probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ .probes.liveness.periodSeconds }}
  failureThreshold: {{ .probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  initialDelaySeconds: {{ .probes.readiness.initialDelaySeconds }}
  periodSeconds: {{ .probes.readiness.periodSeconds }}
  failureThreshold: {{ .probes.readiness.failureThreshold }}
{{- end -}}

{{/* The ServiceAccount of every Dialtone pod. */}}
{{- define "dialtone.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dialtone.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels and annotations every Dialtone pod gets (podLabels, podAnnotations), under
its own selector labels. Arguments: root, component. */}}
{{- define "dialtone.podMetadata" -}}
labels:
  {{- include "dialtone.selectorLabels" (dict "root" .root "component" .component) | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Where a pod runs and as whom: ServiceAccount (no API token: Dialtone never calls the
Kubernetes API), priority class, node selector, tolerations, affinity and topology spread.
With `spread` (edges and etcd), an empty affinity means soft anti-affinity by host and an
empty topologySpreadConstraints a soft spread over zones, so one node or zone lost takes
one edge or member, not several. Arguments: root, component, values (the role's block),
spread. */}}
{{- define "dialtone.podScheduling" -}}
{{- $v := .values }}
{{- $selector := dict "matchLabels" (fromYaml (include "dialtone.selectorLabels" (dict "root" .root "component" .component))) }}
serviceAccountName: {{ include "dialtone.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if .spread }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            {{- toYaml $selector | nindent 12 }}
{{- end }}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if .spread }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      {{- toYaml $selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The etcd TLS Secret (CA, member and client certificates): etcd.tls.existingSecret, or
the one the chart generates. */}}
{{- define "dialtone.etcdTlsSecret" -}}
{{- default (printf "%s-etcd-tls" (include "dialtone.fullname" .)) .Values.etcd.tls.existingSecret -}}
{{- end -}}

{{/* Fails the render when secrets.autoGenerate is off and a Secret the release needs is
not named: under GitOps (helm template, Argo CD, Flux) the chart cannot look up what it
generated before, so generating would rotate the keys on every sync and change every
phone's password. */}}
{{- define "dialtone.requireSecret" -}}
{{- if and (not .root.Values.secrets.autoGenerate) (not .existing) -}}
{{- fail (printf "%s is required with secrets.autoGenerate=false (GitOps: create the Secret yourself, e.g. with sealed-secrets or external-secrets; see the chart README)" .value) -}}
{{- end -}}
{{- end -}}

{{/* The address phones reach StatefulSet edge `i` at, per transport: `t=host:port,...` of
edgeGroup.hosts[i] with the container port, or the node port with a NodePort Service. What
the edge-group Job publishes, and (when the host is an IP) the edge's
--sip-external-address. Arguments: root, i, host. */}}
{{- define "dialtone.edgeAddresses" -}}
{{- $e := .root.Values.edge }}
{{- $per := index (append $e.service.perEdge dict) (min .i (len $e.service.perEdge)) | default dict }}
{{- $nodePorts := $per.nodePorts | default dict }}
{{- $out := list }}
{{- range $t := list "udp" "tcp" "tls" "ws" "wss" }}
{{- $port := int (index $e.sip (printf "%sPort" $t)) }}
{{- if ne $port 0 }}
{{- if and (eq $e.service.type "NodePort") (index $nodePorts $t) }}{{ $port = int (index $nodePorts $t) }}{{ end }}
{{- $host := ternary (printf "[%s]" $.host) $.host (contains ":" $.host) }}
{{- $out = append $out (printf "%s=%s:%d" $t $host $port) }}
{{- end }}
{{- end }}
{{- join "," $out -}}
{{- end -}}
