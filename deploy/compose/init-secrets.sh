#!/bin/sh
# Generates the compose trial's secrets once into the shared volume: the credentials key,
# the edge group's nonce key, coturn's TURN REST API shared secret, an admin API token
# (also written as a token file) and a self-signed certificate for the provisioning HTTPS
# server (localhost and `control`).
set -eu
command -v openssl >/dev/null || apk add --no-cache openssl >/dev/null
cd /secrets
hex32() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
[ -s credentials-key ] || hex32 > credentials-key
[ -s nonce-key ] || hex32 > nonce-key
[ -s turn-secret ] || hex32 > turn-secret
if [ ! -s tokens.toml ]; then
  token="dt_$(hex32)"
  printf '%s\n' "$token" > admin-token
  printf '[[token]]\nname = "admin"\ntoken = "%s"\npermissions = ["telephony:plugin:all"]\n' "$token" > tokens.toml
fi
if [ ! -s provisioning.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,DNS:control,IP:127.0.0.1 \
    -keyout provisioning.key -out provisioning.crt 2>/dev/null
fi
chmod 0444 provisioning.crt provisioning.key
chmod 0444 credentials-key nonce-key turn-secret tokens.toml admin-token
