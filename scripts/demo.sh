#!/bin/sh
# Ghost Port demo (`make demo`): Redis (yours via GP_REDIS, or a local redis-server on a free
# port), a sample HTTP upstream, a bridge and a house "demo" on loopback; sends one request
# with the CLI, prints the reply, the bridge's metrics and `ghostport top --once`, and stops
# everything it started (by PID). DEMO_KEEP=1 (make demo KEEP=1) keeps it running, with the
# web dashboard's address and token, until Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
BIN=${GP_BIN_DIR:-${BUILD:-build}/bin}
for b in ghostport ghostport-bridge ghostport-house; do
    [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run 'make' first" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ghostport-demo.XXXXXX")
PIDS=""
ok=0
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ "$ok" != 1 ]; then
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $f" >&2
            tail -n 20 "$f" >&2
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 100 ms, bounded.
wait_for() {
    limit=$(($1 * 10)); what=$2; shift 2; i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -ge $limit ]; then echo "demo: $what not ready after ${limit}00 ms" >&2; exit 1; fi
        sleep 0.1
    done
}

if [ -n "${GP_REDIS:-}" ]; then
    REDIS=$GP_REDIS
    echo "demo: using Redis at $REDIS"
else
    RPORT=$(free_port)
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
        >"$WORK/redis.log" 2>&1 &
    PIDS="$PIDS $!"
    REDIS="redis://127.0.0.1:$RPORT/0"
    wait_for 10 "redis-server" redis-cli -p "$RPORT" PING
    echo "demo: started redis-server on 127.0.0.1:$RPORT"
fi
export GP_REDIS="$REDIS"

python3 -u tests/upstream.py --port 0 >"$WORK/upstream.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 10 "upstream" grep -q '^listening' "$WORK/upstream.log"
UPORT=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$WORK/upstream.log")
echo "demo: sample upstream on http://127.0.0.1:$UPORT"

SECRET=$("$BIN/ghostport" house add demo --label purpose=demo --force --quiet)

BPORT=$(free_port)
APORT=$(free_port)
# The admin port's token: the dashboard asks for it; a file, as in production (0600: the
# bridge refuses a secret file that others can read).
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$WORK/admin.token")
chmod 600 "$WORK/admin.token"
"$BIN/ghostport-bridge" --allow-ws --bind 127.0.0.1 --listen "$BPORT" --redis "$REDIS" \
    --bridge-id demo-bridge --admin-listen "$APORT" --admin-token-file "$WORK/admin.token" \
    >"$WORK/bridge.log" 2>&1 &
PIDS="$PIDS $!"
echo "demo: bridge listening on ws://127.0.0.1:$BPORT/ (plain ws on loopback only)"

GP_SECRET=$SECRET "$BIN/ghostport-house" --id demo --bridge "ws://127.0.0.1:$BPORT/" \
    --upstream "http://127.0.0.1:$UPORT" >"$WORK/house.log" 2>&1 &
PIDS="$PIDS $!"

connected() {
    "$BIN/ghostport" house list --json | grep '"id":"demo"' | grep -q '"connected":true'
}
wait_for 15 "house demo connected" connected
echo "demo: house demo connected"
echo
"$BIN/ghostport" house list
echo
echo "\$ ghostport request demo GET /echo?hello=world -H 'Accept: application/json'"
"$BIN/ghostport" request demo GET '/echo?hello=world' -H 'Accept: application/json'
echo

# What an operator sees: the bridge's metrics, and the deployment as `ghostport top` shows it
# (the bridge publishes its stats every second).
echo "\$ curl -s http://127.0.0.1:$APORT/metrics | grep -E '^gp_bridge_(houses|requests_total)'"
python3 - "$APORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
print("\n".join(l for l in text.splitlines() if l.startswith(("gp_bridge_houses", "gp_bridge_requests_total"))))
PY
echo
published() {
    "$BIN/ghostport" top --json -n 0 | grep -q '"req_total":[1-9]'
}
wait_for 5 "the bridge's stats in Redis" published
echo "\$ ghostport top --once"
"$BIN/ghostport" top --once
echo
if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "demo: dashboard at http://127.0.0.1:$APORT/ (token: $(cat "$WORK/admin.token"));"
    echo "demo: in another terminal: GP_REDIS=$REDIS $BIN/ghostport top"
    echo "demo: running until Ctrl-C"
    ok=1
    while :; do sleep 1; done
fi
ok=1
echo "demo: done; stopping what it started"
