#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing, checks the
# house rules (rustfmt, and clippy with the lints of Cargo.toml's [workspace.lints] and
# clippy.toml), builds the binaries the cluster tests start (and the previous release's
# `dialtone`, from this clone's history, for the upgrade test), runs every test with nextest,
# then checks the deployment files (Prometheus rules with promtool, the Helm chart with
# helm-python-sdk and kubernetes-validate).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
# rustup's cargo, when deps.sh just installed it.
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The previous release's `dialtone`, for the rolling-upgrade test; before this build's
# binaries, as building it replaces target/debug/dialtone.
bash scripts/previous-release.sh
cargo build --bins
cargo nextest run --workspace --no-fail-fast "$@"
bash scripts/deploy-check.sh
