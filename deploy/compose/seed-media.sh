#!/bin/sh
# Registers the media profile's rtpengine (ng on 172.29.0.20:2223) and coturn (phones on
# this machine reach it at 127.0.0.1:3478) as media server `rtp-1` of region `local`, once
# the config API answers. Sites use it once they list the region (--media-region local).
set -eu
export DIALTONE_TOKEN="$(cat /secrets/admin-token)"
ng="${MEDIA_NG:-172.29.0.20:2223}"
turn="${MEDIA_TURN:-turn:127.0.0.1:3478?transport=udp}"
for i in $(seq 1 60); do
  if dialtonectl media-servers update rtp-1 --name "Local rtpengine" --region local --ng "$ng" --turn-url "$turn" 2>/dev/null ||
     dialtonectl media-servers create rtp-1 --name "Local rtpengine" --region local --ng "$ng" --turn-url "$turn"; then
    echo "media server 'rtp-1' registered"
    exit 0
  fi
  sleep 2
done
echo "config API did not answer" >&2
exit 1
