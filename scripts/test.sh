#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing, builds the
# binaries the cluster tests start, then runs every test with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test
cargo build --bins
cargo nextest run --workspace --no-fail-fast "$@"
