{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "trade-blotter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Kept at most 40 characters: StatefulSet pods get a
"controller-revision-hash" label of name + "-" + 10 characters, and suffixes such as
"-coldpath-headless" must still fit in 63.
*/}}
{{- define "trade-blotter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trade-blotter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trade-blotter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trade-blotter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trade-blotter.labels" -}}
helm.sh/chart: {{ include "trade-blotter.chart" . }}
{{ include "trade-blotter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trade-blotter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "trade-blotter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trade-blotter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trade-blotter.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding JWT key material, or "" when there is none. */}}
{{- define "trade-blotter.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if or .Values.auth.jwtSecret .Values.auth.jwtPublicKey }}
{{- printf "%s-auth" (include "trade-blotter.fullname" .) }}
{{- end }}
{{- end }}

{{/* Prometheus job selector used by the alert rules. */}}
{{- define "trade-blotter.jobSelector" -}}
{{- if .Values.alerts.jobSelector }}
{{- .Values.alerts.jobSelector }}
{{- else }}
{{- printf "job=~\"%s(-coldpath)?-headless\"" (include "trade-blotter.fullname" .) }}
{{- end }}
{{- end }}

{{- define "trade-blotter.hasMonitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/*
One worker StatefulSet. Called with a dict:
  root      - the chart context
  workload  - .Values.worker or .Values.coldpath
  component - "worker" or "coldpath" (label and name suffix)
  role      - WORKER_ROLE: all, hotpath or coldpath
  replicas  - false to leave replicas to an autoscaler
*/}}
{{- define "trade-blotter.statefulset" -}}
{{- $root := .root }}
{{- $w := .workload }}
{{- $fullname := include "trade-blotter.fullname" $root }}
{{- $name := ternary $fullname (printf "%s-%s" $fullname .component) (eq .component "worker") }}
{{- $secretName := include "trade-blotter.secretName" $root }}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "trade-blotter.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if .replicas }}
  replicas: {{ $w.replicas }}
  {{- end }}
  serviceName: {{ $name }}-headless
  podManagementPolicy: {{ $w.podManagementPolicy }}
  updateStrategy:
    type: RollingUpdate
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: {{ $w.persistence.retentionPolicy.whenDeleted }}
    whenScaled: {{ $w.persistence.retentionPolicy.whenScaled }}
  selector:
    matchLabels:
      {{- include "trade-blotter.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
  template:
    metadata:
      labels:
        {{- include "trade-blotter.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- with $w.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if and $secretName (not $root.Values.auth.existingSecret) }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $w.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "trade-blotter.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
      {{- with $w.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: worker
          image: {{ include "trade-blotter.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            - faust
            - -A
            - app.main
            - worker
            - -l
            - {{ $root.Values.config.logLevel | lower }}
            - --web-port
            - $(WEB_PORT)
          ports:
            - name: http
              containerPort: {{ $root.Values.web.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $fullname }}-config
          env:
            - name: WEB_PORT
              value: {{ $root.Values.web.port | quote }}
            - name: WORKER_ROLE
              value: {{ .role | quote }}
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            # Static group membership: a restarted pod rejoins with its old id and gets its old
            # partitions back without a group-wide rebalance.
            - name: CONSUMER_GROUP_INSTANCE_ID
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- if $secretName }}
            - name: AUTH_JWT_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $secretName }}
                  key: {{ $root.Values.auth.existingSecretKeys.jwtSecret }}
                  optional: true
            - name: AUTH_JWT_PUBLIC_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ $secretName }}
                  key: {{ $root.Values.auth.existingSecretKeys.jwtPublicKey }}
                  optional: true
            {{- end }}
          startupProbe:
            httpGet:
              path: {{ $root.Values.probes.startup.path }}
              port: http
            periodSeconds: {{ $root.Values.probes.startup.periodSeconds }}
            timeoutSeconds: {{ $root.Values.probes.startup.timeoutSeconds }}
            failureThreshold: {{ $root.Values.probes.startup.failureThreshold }}
          readinessProbe:
            httpGet:
              path: {{ $root.Values.probes.readiness.path }}
              port: http
            periodSeconds: {{ $root.Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $root.Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $root.Values.probes.readiness.failureThreshold }}
            successThreshold: {{ $root.Values.probes.readiness.successThreshold }}
          livenessProbe:
            httpGet:
              path: {{ $root.Values.probes.liveness.path }}
              port: http
            periodSeconds: {{ $root.Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $root.Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $root.Values.probes.liveness.failureThreshold }}
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: {{ $root.Values.config.dataDir }}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpVolume.sizeLimit }}
      {{- with $w.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $w.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        {{- if $w.topologySpreadConstraints }}
        {{- toYaml $w.topologySpreadConstraints | nindent 8 }}
        {{- else }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "trade-blotter.selectorLabels" $root | nindent 14 }}
              app.kubernetes.io/component: {{ .component }}
        {{- end }}
  volumeClaimTemplates:
    - apiVersion: v1
      kind: PersistentVolumeClaim
      metadata:
        name: data
        labels:
          {{- include "trade-blotter.selectorLabels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ .component }}
      spec:
        accessModes:
          {{- toYaml $w.persistence.accessModes | nindent 10 }}
        {{- with $w.persistence.storageClassName }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $w.persistence.size }}
{{- end }}

{{/* Headless Service of one StatefulSet: stable pod DNS, and scrape targets incl. not-ready pods. */}}
{{- define "trade-blotter.headlessService" -}}
{{- $root := .root }}
{{- $fullname := include "trade-blotter.fullname" $root }}
{{- $name := ternary $fullname (printf "%s-%s" $fullname .component) (eq .component "worker") }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "trade-blotter.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    trade-blotter/scrape: "true"
spec:
  type: ClusterIP
  clusterIP: None
  # Recovering (not ready) pods still serve /metrics; Prometheus must see them.
  publishNotReadyAddresses: true
  selector:
    {{- include "trade-blotter.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  ports:
    - name: http
      port: {{ $root.Values.web.port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "trade-blotter.pdb" -}}
{{- $root := .root }}
{{- $fullname := include "trade-blotter.fullname" $root }}
{{- $name := ternary $fullname (printf "%s-%s" $fullname .component) (eq .component "worker") }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "trade-blotter.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  maxUnavailable: {{ .workload.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "trade-blotter.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
{{- end }}
