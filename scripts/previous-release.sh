#!/usr/bin/env bash
# Builds the previous release's `dialtone` (the commit named in ci/previous-release) into
# target/previous-release/dialtone, for the rolling-upgrade test. Its source comes from
# this clone's history (git archive; a shallow clone must be deepened first); it builds in
# this tree's target dir, so the dependencies both releases share are compiled once.
# Building there replaces target/debug/dialtone: run `cargo build --bins` after it (the
# test script does).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$(grep -v '^#' ci/previous-release | awk 'NF {print $1; exit}')
out=target/previous-release
if ! commit=$(git rev-parse --verify --quiet "$rev^{commit}"); then
  echo "previous release $rev is not in this clone's history (a shallow clone? git fetch --unshallow)" >&2
  exit 1
fi
if [[ -x $out/dialtone && "$(cat "$out/commit" 2>/dev/null)" == "$commit" ]]; then
  exit 0
fi
rm -rf "$out"
mkdir -p "$out/src"
git archive "$commit" | tar -x -C "$out/src"
target=$(pwd)/target
(cd "$out/src" && CARGO_TARGET_DIR="$target" cargo build --locked --bin dialtone)
cp target/debug/dialtone "$out/dialtone"
echo "$commit" > "$out/commit"
rm -rf "$out/src"
echo "built the previous release ($commit) into $out/dialtone"
