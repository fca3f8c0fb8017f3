#!/bin/sh
# Fill deploy/nginx.conf.template from the environment, check it, and run nginx in the foreground.
#   SEQCAST_UPSTREAM      host:port of the api (default api:8001)
#   SEQCAST_PROXY_LISTEN  port to listen on (default 8000)
#   SEQCAST_PROXY_MAX_BODY  largest body, nginx size (default 8m: SEQCAST_MAX_BODY_BYTES' default)
#   SEQCAST_PROXY_TIMEOUT seconds a client may stall between two reads or writes (default 10)
#   SEQCAST_PROXY_PREFIX  writable folder for the pid and temporary files (default /tmp/nginx)
set -eu
template=${SEQCAST_PROXY_TEMPLATE:-/etc/seqcast/nginx.conf.template}
prefix=${SEQCAST_PROXY_PREFIX:-/tmp/nginx}
conf=$prefix/nginx.conf
mkdir -p "$prefix"
sed -e "s|\${UPSTREAM}|${SEQCAST_UPSTREAM:-api:8001}|g" \
    -e "s|\${LISTEN}|${SEQCAST_PROXY_LISTEN:-8000}|g" \
    -e "s|\${MAX_BODY}|${SEQCAST_PROXY_MAX_BODY:-8m}|g" \
    -e "s|\${TIMEOUT}|${SEQCAST_PROXY_TIMEOUT:-10}|g" \
    -e "s|\${PREFIX}|$prefix|g" \
    "$template" > "$conf"
nginx -e stderr -t -q -c "$conf" -p "$prefix"
exec nginx -e stderr -c "$conf" -p "$prefix" -g "daemon off;"
