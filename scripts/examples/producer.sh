#!/bin/sh
# Ghost Port producer with redis-cli: one XADD, wait for the reply, print its entries.
# GP_REDIS: redis://[user:password@]host:port/db or rediss://... for TLS (default
# redis://127.0.0.1:6379/0); a password may come from REDISCLI_AUTH instead (redis-cli reads
# it: no password on the command line); GP_REDIS_CA_FILE: the CA of a rediss:// server;
# GP_HOUSE: house id.
set -eu
REDIS=${GP_REDIS:-redis://127.0.0.1:6379/0}
case "$REDIS" in
rediss://*) set -- --tls ${GP_REDIS_CA_FILE:+--cacert "$GP_REDIS_CA_FILE"} ;;
*) set -- ;;
esac
HOUSE=${GP_HOUSE:-demo}
ID=$(cat /proc/sys/kernel/random/uuid)

redis-cli "$@" -u "$REDIS" XADD "gp:{$HOUSE}:req" MAXLEN '~' 10000 '*' \
    id "$ID" method GET path '/echo?from=redis-cli' \
    headers '{"accept":"application/json"}' body '' timeout_ms 5000 reply "gp:rep:$ID" >/dev/null

# Wait for the first reply entry (the bridge always answers by the deadline, 504 at worst),
# then print the whole reply: fields id, status, headers, body, final (error, message).
# Bodies over 1 MiB arrive as several entries: see the Python/Node examples for the loop.
[ -n "$(redis-cli "$@" -u "$REDIS" --raw XREAD BLOCK 6000 STREAMS "gp:rep:$ID" 0-0)" ] ||
    { echo "no reply" >&2; exit 3; }
redis-cli "$@" -u "$REDIS" --raw XRANGE "gp:rep:$ID" - +
