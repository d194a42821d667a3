#!/bin/sh
# Installs every Debian package Ghost Port needs to build, test and run its demo.
# Idempotent: packages already present are skipped; apt is only touched when something is missing.
set -eu

PKGS="build-essential pkg-config clang llvm curl ca-certificates openssl
libuv1-dev libwebsockets-dev libwebsockets-evlib-uv libhiredis-dev libsodium-dev libzstd-dev libcurl4-openssl-dev
libjansson-dev libssl-dev libhttp-parser-dev libncurses-dev libcriterion-dev redis-server redis-tools python3 python3-redis
kcptun openssh-server openssh-client iproute2 tmux"
# The dashboard's browser test (tests/web) drives Debian's chromium (/usr/bin/chromium).
PKGS="$PKGS chromium"
# The deploy suite (tests/integration/deploy.c): systemd-analyze (in bookworm's systemd
# package itself), docker-compose to validate the compose file (no engine needed), strace to
# hold the daemons against their units' sandbox, python3-yaml for deploy.py.
PKGS="$PKGS systemd docker-compose strace python3-yaml"
# The L3 tunnel (proto/TUN.md): nftables for the house's --tun-masquerade; ping and iperf3 for
# its tests; the VPNs its benchmark compares against (tests/bench/links.c).
PKGS="$PKGS nftables iputils-ping iperf3 wireguard-go wireguard-tools openvpn tinc"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# Node (for the README's Node producer example): any node+npm on PATH will do; Debian's
# packages only when there is none (they conflict with other Node installs).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

# tests/web: playwright-core from the npm registry, pinned by its package-lock.json; npm ci
# when it is not installed or the lock file changed since.
web_deps() {
    web="$(dirname "$0")/../tests/web"
    if [ ! -f "$web/node_modules/playwright-core/package.json" ] ||
        [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
        echo "deps: npm ci in tests/web"
        (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

if [ -z "$missing" ]; then
    web_deps
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
web_deps
