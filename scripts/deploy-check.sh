#!/usr/bin/env bash
# Checks the deployment files: the Prometheus alert rules (promtool: syntax and unit tests)
# and the Helm chart (lint, schema, rendering and Kubernetes validation of every manifest
# for the default values and each file in helm/dialtone/ci/, and the chart's edge-group Job
# run against a real config node) and the compose trial (its services' commands, scripts and
# environment run natively on loopback: scripts/compose_check.py). The dashboards' queries
# are run against a real Prometheus by tests/tests/operations.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
bash scripts/helm-check.sh
"${DIALTONE_HELM_VENV:-$HOME/.cache/dialtone/helm-venv}/bin/python" scripts/compose_check.py
