#!/usr/bin/env bash
# Lints, renders and validates the Helm chart (see scripts/helm_check.py). Installs
# helm-python-sdk and kubernetes-validate from PyPI into a cached virtualenv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${DIALTONE_HELM_VENV:-$HOME/.cache/dialtone/helm-venv}"
if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' pyyaml
fi
exec "$venv/bin/python" scripts/helm_check.py
