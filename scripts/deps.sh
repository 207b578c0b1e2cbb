#!/usr/bin/env bash
# Installs what building and testing Dialtone need on Debian, if missing: Rust (rustup),
# protoc and its well-known types (etcd-client's build script needs them) and, with --test, what the tests run for
# real: etcd, SIPp, socat (a TLS tunnel for SIPp, which Debian builds without TLS),
# sipvicious (the attacker's tools), baresip and linphonec (real softphones), rtpengine
# (the media relay the edges anchor calls at, userspace forwarding only), coturn (the TURN
# server browsers relay through), nftables (the ng guard), Chromium, Node.js and
# tests/browser's npm packages (JsSIP and playwright-core: a WebRTC phone in a real
# browser), Prometheus
# (its server scrapes a node; promtool checks the alert rules) and cargo-nextest. With
# --bench, also the peers the benchmarks in loadtest/ measure against: Kamailio (sip-bench)
# and nginx (provisioning-bench).
set -euo pipefail
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
# Rust itself, with rustup (stable, its default profile: rustfmt and clippy included), when
# no cargo is found; the callers source ~/.cargo/env after this script.
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "installing: rust (rustup, stable)" >&2
  if ! command -v curl >/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends curl ca-certificates build-essential >/dev/null
  fi
  command -v cc >/dev/null || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends build-essential >/dev/null
  }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default >/dev/null
fi
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
# protoc's well-known types (google/protobuf/descriptor.proto, which etcd's protos import)
# come with libprotobuf-dev, only a recommendation of protobuf-compiler.
[ -e /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
mode="${1:-}"
# --bench installs everything --test does, and the peers besides.
testing=false
if [ "$mode" = "--test" ] || [ "$mode" = "--bench" ]; then testing=true; fi
if $testing; then
  # etcdctl: the chart check runs the etcd snapshot CronJob's command for real.
  command -v etcdctl >/dev/null || need+=(etcd-client)
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v socat >/dev/null || need+=(socat)
  command -v svwar >/dev/null || need+=(sipvicious)
  command -v baresip >/dev/null || need+=(baresip-core)
  command -v linphonec >/dev/null || need+=(linphone-cli)
  command -v sipsak >/dev/null || need+=(sipsak)
  # ss reads a connection's DSCP marking (tests/tests/dscp.rs); ip and nft run the ng
  # guard in a network namespace (tests/tests/ng_guard.rs, the chart and compose checks).
  command -v ss >/dev/null || need+=(iproute2)
  command -v nft >/dev/null || need+=(nftables)
  command -v rtpengine >/dev/null || need+=(rtpengine-daemon)
  command -v turnserver >/dev/null || need+=(coturn)
  command -v chromium >/dev/null || need+=(chromium)
  command -v npm >/dev/null || need+=(nodejs npm)
  command -v promtool >/dev/null || need+=(prometheus)
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
fi
# etcd 3.5, the release the chart and compose run (Debian 12's etcd-server is 3.4, whose
# compactions and revokes behave differently at scale): Debian 13's etcd-server, fetched
# with apt through a sources list of this script's own (verified with Debian's archive
# keys; nothing is added to the system's sources) and its binary installed as
# /usr/local/bin/etcd, ahead of any /usr/bin/etcd on the PATH.
etcd35() {
  [[ "$(etcd --version 2>/dev/null)" == "etcd Version: 3.5."* ]]
}
if $testing && ! etcd35; then
  echo "installing: etcd 3.5 (Debian 13's etcd-server) as /usr/local/bin/etcd" >&2
  apt_dir="$(mktemp -d)"
  # Removed when the script ends, whether or not the install went through.
  trap 'rm -rf "$apt_dir"' EXIT
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  own_apt=(-qq -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
  apt-get "${own_apt[@]}" update
  (cd "$apt_dir" && apt-get "${own_apt[@]}" download etcd-server)
  dpkg-deb -x "$apt_dir"/etcd-server_*.deb "$apt_dir/root"
  $sudo install -m 0755 "$apt_dir/root/usr/bin/etcd" /usr/local/bin/etcd
  hash -r
  etcd35 || { echo "etcd 3.5 did not install: $(etcd --version | head -1)" >&2; exit 1; }
fi
if [ "$mode" = "--bench" ]; then
  command -v kamailio >/dev/null || need+=(kamailio)
  command -v nginx >/dev/null || need+=(nginx-light)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The house rules CI checks: rustfmt and clippy (rustup's default profile has both).
if $testing; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
# The browser phone's packages, at the versions package-lock.json pins (no browser download:
# Playwright drives Debian's Chromium).
browser="$(dirname "$0")/../tests/browser"
if $testing && [ ! -e "$browser/node_modules/.package-lock.json" ]; then
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The tests' Python: jsonschema (the REST API test checks every answer against the
# OpenAPI document) and Playwright (the console test drives Debian's Chromium with it:
# the pip package carries its driver, and no browser is downloaded).
venv="${DIALTONE_TEST_VENV:-$HOME/.cache/dialtone/test-venv}"
if $testing && ! "$venv/bin/python" -c 'import jsonschema, playwright' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'jsonschema==4.23.0' 'playwright==1.65.2'
fi
if $testing && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
