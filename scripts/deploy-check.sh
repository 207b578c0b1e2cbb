#!/usr/bin/env bash
# Checks the deployment files: the Prometheus alert rules (promtool: syntax and unit tests)
# and the Helm chart (lint, schema, rendering and Kubernetes validation of every manifest
# for the default values and each file in helm/dialtone/ci/). The dashboards' queries are
# run against a real Prometheus by tests/tests/operations.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
bash scripts/helm-check.sh
