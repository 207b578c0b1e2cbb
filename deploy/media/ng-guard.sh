#!/bin/sh
# dialtone-ng-guard NG_PORT RELAY_PORT_MIN RELAY_PORT_MAX
#
# Keeps a TURN relay away from rtpengine's ng control port. rtpengine's ng protocol has no
# authentication, and coturn beside it relays a browser's packets to the node's own
# address (where rtpengine takes the browsers' media), so without this anyone holding a
# TURN credential could send `delete`, `list` or `offer` to the ng port through the relay.
# coturn sends what it relays from its relay ports only (--min-port..--max-port), so this
# drops UDP to NG_PORT from a source port in that range, on this network namespace, for
# IPv4 and IPv6. The edges' ng clients use the kernel's ephemeral ports (32768-60999 by
# default), which the relay range must stay out of.
#
# Idempotent: the table `dialtone_ng_guard` is replaced whole, in one nft transaction.
# Needs CAP_NET_ADMIN in the namespace (the Helm chart's media pods run it in an init
# container on the node's network). Prints the table it installed.
set -eu

usage() {
  echo "usage: dialtone-ng-guard NG_PORT RELAY_PORT_MIN RELAY_PORT_MAX" >&2
  exit 2
}

port() {
  case "$1" in
    '' | *[!0-9]*) echo "dialtone-ng-guard: $2 '$1' is not a port number" >&2; exit 2 ;;
  esac
  if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
    echo "dialtone-ng-guard: $2 $1 is not in 1-65535" >&2
    exit 2
  fi
}

[ "$#" -eq 3 ] || usage
port "$1" NG_PORT
port "$2" RELAY_PORT_MIN
port "$3" RELAY_PORT_MAX
if [ "$2" -gt "$3" ]; then
  echo "dialtone-ng-guard: RELAY_PORT_MIN $2 is above RELAY_PORT_MAX $3" >&2
  exit 2
fi
if [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; then
  echo "dialtone-ng-guard: NG_PORT $1 is inside the relay range $2-$3" >&2
  exit 2
fi

# The edges' ng commands come from the kernel's ephemeral ports: a relay range reaching
# into them would drop some of those (on nodes whose edges run on the node's network).
range=/proc/sys/net/ipv4/ip_local_port_range
if [ -r "$range" ]; then
  # (dash's `read` cannot read /proc files: split the text instead.)
  ports=$(cat "$range")
  low=${ports%%[[:space:]]*}
  high=${ports##*[[:space:]]}
  if [ "$2" -le "$high" ] && [ "$3" -ge "$low" ]; then
    echo "dialtone-ng-guard: the relay range $2-$3 overlaps the ephemeral ports $low-$high ($range), where ng commands come from" >&2
    exit 2
  fi
fi

# Declaring the table first makes the delete succeed when it is not there yet.
nft -f - <<EOF
table inet dialtone_ng_guard
delete table inet dialtone_ng_guard
table inet dialtone_ng_guard {
  chain input {
    type filter hook input priority filter - 10; policy accept;
    udp dport $1 udp sport $2-$3 counter drop comment "turn relay to rtpengine ng"
  }
}
EOF
nft list table inet dialtone_ng_guard
