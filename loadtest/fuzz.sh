#!/usr/bin/env bash
# Runs the cargo-fuzz targets on the pure SIP code for a bounded time each.
# usage: loadtest/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Seeds come from the RFC 4475/5118 torture messages; crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# The machine has one (stable) toolchain; libFuzzer's sanitizer flags need nightly features.
export RUSTC_BOOTSTRAP=1
for target in sip_message sip_stream; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  cp -n testdata/conformance/sip/rfc4475/*.dat testdata/conformance/sip/rfc5118/*.dat "$corpus"/ 2>/dev/null || true
  echo "fuzzing $target for ${secs}s"
  cargo fuzz run "$target" "$corpus" -- -max_total_time="$secs" -max_len=65535 -rss_limit_mb=256 2>&1 | tail -n 5
done
