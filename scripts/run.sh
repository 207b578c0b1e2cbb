#!/usr/bin/env bash
# Runs Dialtone on this machine: every role in one process on the embedded store
# (data in ${XDG_DATA_HOME:-~/.local/share}/dialtone). Extra flags go to `dialtone serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# rustup's cargo, when deps.sh just installed it.
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The two binaries the run needs (the load tests' tools are built for benchmarks only).
cargo build --release -p dialtone -p dialtonectl
exec target/release/dialtone serve --roles all "$@"
