#!/bin/sh
# Publishes the three edges as the edge group `local` once the config API answers (the
# compose equivalent of the Helm chart's edge-group Job). Phones on 127.0.0.1 reach
# edge-N on host ports 506N (UDP and TCP).
set -eu
export DIALTONE_TOKEN="$(cat /secrets/admin-token)"
edges="--edge=edge-1=udp://127.0.0.1:5061,tcp://127.0.0.1:5061 --edge=edge-2=udp://127.0.0.1:5062,tcp://127.0.0.1:5062 --edge=edge-3=udp://127.0.0.1:5063,tcp://127.0.0.1:5063"
for i in $(seq 1 60); do
  # shellcheck disable=SC2086
  if dialtonectl edge-groups update local --name "Local trial" $edges 2>/dev/null ||
     dialtonectl edge-groups create local --name "Local trial" $edges; then
    echo "edge group 'local' published"
    exit 0
  fi
  sleep 2
done
echo "config API did not answer" >&2
exit 1
