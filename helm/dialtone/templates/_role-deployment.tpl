{{/*
A role that runs as a Deployment behind a ClusterIP gRPC Service (config, provisioning,
status): the Deployment, its Service, PodDisruptionBudget and ServiceMonitor. Arguments: root
(the chart's context), role (its name), values (its block of values.yaml), credentialsKey
(mount the credentials key Secret), https (provisioning: serve phones over HTTPS with the
certificate of values.tls.secretName, behind a Service of their own).
*/}}
{{- define "dialtone.roleDeployment" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $c := .values }}
{{- $credentialsKey := .credentialsKey }}
{{- $https := .https }}
{{- /* The config role serves the REST API too (apiPort), with the gRPC certificate. */}}
{{- $api := and (eq $role "config") $c.apiPort }}
{{- if and $https (not $c.tls.secretName) }}
{{- fail (printf "%s.tls.secretName is required: phones fetch their files over HTTPS" $role) }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "dialtone.fullname" $root }}-{{ $role }}
  labels:
    {{- include "dialtone.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
spec:
  replicas: {{ $c.replicas }}
  selector:
    matchLabels:
      {{- include "dialtone.selectorLabels" (dict "root" $root "component" $role) | nindent 6 }}
  template:
    metadata:
      {{- include "dialtone.podMetadata" (dict "root" $root "component" $role) | nindent 6 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.common.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      containers:
        - name: dialtone
          image: {{ include "dialtone.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [serve]
          env:
            - name: DIALTONE_NODE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- include "dialtone.commonEnv" $root | nindent 12 }}
            - name: DIALTONE_ROLES
              value: {{ $role }}
            - name: DIALTONE_LISTEN_GRPC
              value: "0.0.0.0:{{ $c.grpcPort }}"
            - name: DIALTONE_LISTEN_ADMIN
              value: "0.0.0.0:{{ $c.adminPort }}"
            {{- if $api }}
            - name: DIALTONE_LISTEN_API
              value: "0.0.0.0:{{ $c.apiPort }}"
            {{- end }}
            {{- if $credentialsKey }}
            - name: DIALTONE_CREDENTIALS_KEY_FILE
              value: /etc/dialtone/secrets/credentials-key/{{ $root.Values.secrets.credentialsKey.key }}
            {{- end }}
            {{- if $https }}
            - name: DIALTONE_PROVISIONING_HTTPS
              value: "0.0.0.0:{{ $c.httpsPort }}"
            - name: DIALTONE_PROVISIONING_TLS_CERT
              value: /etc/dialtone/tls/tls.crt
            - name: DIALTONE_PROVISIONING_TLS_KEY
              value: /etc/dialtone/tls/tls.key
            - name: DIALTONE_PROVISIONING_RESYNC_RATE
              value: {{ $c.resyncRate | quote }}
            {{- if $c.tls.clientCaSecretName }}
            - name: DIALTONE_PROVISIONING_CLIENT_CA
              value: /etc/dialtone/client-ca/ca.crt
            {{- end }}
            {{- if include "dialtone.turnEnabled" $root }}
            # WebRTC phones get time-limited credentials for the media servers' coturn.
            - name: DIALTONE_TURN_SECRET_FILE
              value: /etc/dialtone/secrets/turn-secret/{{ $root.Values.secrets.turnSecret.key }}
            {{- end }}
            {{- end }}
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: grpc
              containerPort: {{ $c.grpcPort }}
              protocol: TCP
            - name: admin
              containerPort: {{ $c.adminPort }}
              protocol: TCP
            {{- if $api }}
            - name: api
              containerPort: {{ $c.apiPort }}
              protocol: TCP
            {{- end }}
            {{- if $https }}
            - name: https
              containerPort: {{ $c.httpsPort }}
              protocol: TCP
            {{- end }}
          {{- include "dialtone.probes" (dict "probes" $c.probes) | nindent 10 }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.common.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "dialtone.commonMounts" $root | nindent 12 }}
            {{- if $credentialsKey }}
            - name: credentials-key
              mountPath: /etc/dialtone/secrets/credentials-key
              readOnly: true
            {{- end }}
            {{- if $https }}
            - name: tls
              mountPath: /etc/dialtone/tls
              readOnly: true
            {{- if $c.tls.clientCaSecretName }}
            - name: client-ca
              mountPath: /etc/dialtone/client-ca
              readOnly: true
            {{- end }}
            {{- if include "dialtone.turnEnabled" $root }}
            - name: turn-secret
              mountPath: /etc/dialtone/secrets/turn-secret
              readOnly: true
            {{- end }}
            {{- end }}
      volumes:
        {{- include "dialtone.commonVolumes" $root | nindent 8 }}
        {{- if $credentialsKey }}
        - name: credentials-key
          secret:
            secretName: {{ include "dialtone.credentialsKeySecret" $root }}
        {{- end }}
        {{- if $https }}
        - name: tls
          secret:
            secretName: {{ $c.tls.secretName }}
        {{- if $c.tls.clientCaSecretName }}
        - name: client-ca
          secret:
            secretName: {{ $c.tls.clientCaSecretName }}
        {{- end }}
        {{- if include "dialtone.turnEnabled" $root }}
        - name: turn-secret
          secret:
            secretName: {{ include "dialtone.turnSecret" $root }}
        {{- end }}
        {{- end }}
      {{- include "dialtone.podScheduling" (dict "root" $root "component" $role "values" $c "spread" false) | nindent 6 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "dialtone.fullname" $root }}-{{ $role }}
  labels:
    {{- include "dialtone.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
    # The Prometheus job of its metrics (the ServiceMonitor's jobLabel), as the alert rules
    # and dashboards in deploy/ select them.
    dialtone.io/job: dialtone-{{ $role }}
  {{- with $c.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $c.service.type }}
  selector:
    {{- include "dialtone.selectorLabels" (dict "root" $root "component" $role) | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $c.grpcPort }}
      targetPort: grpc
      protocol: TCP
    - name: admin
      port: {{ $c.adminPort }}
      targetPort: admin
      protocol: TCP
    {{- if $api }}
    - name: api
      port: {{ $c.apiPort }}
      targetPort: api
      protocol: TCP
    {{- end }}
{{- if $https }}
---
# Where phones fetch their files: its own Service, so it can face the phones' network while
# the gRPC API stays internal. Local keeps each phone's address for the per-source bans.
apiVersion: v1
kind: Service
metadata:
  name: {{ include "dialtone.fullname" $root }}-{{ $role }}-https
  labels:
    {{- include "dialtone.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $role }}
  {{- with $c.httpsService.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $c.httpsService.type }}
  {{- if ne $c.httpsService.type "ClusterIP" }}
  externalTrafficPolicy: {{ $c.httpsService.externalTrafficPolicy }}
  {{- end }}
  selector:
    {{- include "dialtone.selectorLabels" (dict "root" $root "component" $role) | nindent 4 }}
  ports:
    - name: https
      port: {{ $c.httpsService.port }}
      targetPort: https
      protocol: TCP
{{- end }}
{{- if $c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "dialtone.fullname" $root }}-{{ $role }}
  labels:
    {{- include "dialtone.labels" $root | nindent 4 }}
spec:
  # At most one pod down at a time; with one replica a drain still proceeds (a
  # minAvailable of 1 would block it for ever).
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "dialtone.selectorLabels" (dict "root" $root "component" $role) | nindent 6 }}
{{- end }}
{{- if $c.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "dialtone.fullname" $root }}-{{ $role }}
  labels:
    {{- include "dialtone.labels" $root | nindent 4 }}
    {{- with $c.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  jobLabel: dialtone.io/job
  selector:
    matchLabels:
      {{- include "dialtone.selectorLabels" (dict "root" $root "component" $role) | nindent 6 }}
      dialtone.io/job: dialtone-{{ $role }}
  endpoints:
    - port: admin
      path: /metrics
      interval: {{ $c.serviceMonitor.interval }}
{{- end }}
{{- end }}
