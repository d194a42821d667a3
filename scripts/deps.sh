#!/bin/sh
# Installs the Debian packages Ghost Port needs. Idempotent: packages already present are
# skipped; apt is only touched when something is missing.
# Usage: scripts/deps.sh [build|test]
#   build  what `make`, `make demo`, `make install` and `make deb` need: the compiler, the -dev
#          libraries, help2man, dpkg-dev, and redis-server, python3 and curl for the demo
#          (`make deps`, run by `make demo`)
#   test   all of that, and what `make test` (and asan, fuzz, bench) adds: Criterion, clang,
#          the browser and Node packages of the dashboard's test, the tools of the deploy,
#          package and L3 suites, the VPNs of the benchmark (`make deps-test`, run by them)
#   (none) the same as test
set -eu

what=${1:-test}
case "$what" in
build | test) ;;
*)
    echo "usage: $0 [build|test]" >&2
    exit 2
    ;;
esac

# --- build: make, make demo, make install, make deb --------------------------------------------
# python3: scripts/embed-web.py (the dashboard compiled into the bridge) and the demo's
# upstream (tests/upstream.py); help2man: the man pages (scripts/gen-man.sh); dpkg-dev:
# dpkg-shlibdeps for make deb's Depends; libwebsockets-evlib-uv: the bridge's libuv event loop,
# a plugin libwebsockets loads at run time.
PKGS="build-essential pkg-config dpkg-dev help2man curl ca-certificates openssl python3
libuv1-dev libwebsockets-dev libwebsockets-evlib-uv libhiredis-dev libsodium-dev libzstd-dev libcurl4-openssl-dev
libjansson-dev libssl-dev libhttp-parser-dev libncurses-dev redis-server redis-tools"

if [ "$what" = test ]; then
    # Unit and integration tests (Criterion), fuzzers (clang, llvm), make format-check
    # (clang-format), the README's Python producer (python3-redis), `ghostport top` in a
    # terminal (tmux), ssh and kcptun through TCP streams and the links benchmark.
    PKGS="$PKGS libcriterion-dev clang llvm clang-format python3-redis tmux kcptun openssh-server
    openssh-client iproute2"
    # The dashboard's browser test (tests/web) drives Debian's chromium (/usr/bin/chromium).
    PKGS="$PKGS chromium"
    # The deploy suite (tests/integration/deploy.c): systemd-analyze (in bookworm's systemd
    # package itself), docker-compose to validate the compose file (no engine needed), strace to
    # hold the daemons against their units' sandbox, python3-yaml for deploy.py.
    PKGS="$PKGS systemd docker-compose strace python3-yaml"
    # The package suite (tests/integration/pkg.c): the .debs installed in a throw-away root
    # (mount, unshare: util-linux), their man pages looked up with man-db's man.
    PKGS="$PKGS man-db util-linux"
    # The L3 tunnel (proto/TUN.md): nftables for the house's --tun-masquerade; ping and iperf3
    # for its tests; the VPNs its benchmark compares against (tests/bench/links.c).
    PKGS="$PKGS nftables iputils-ping iperf3 wireguard-go wireguard-tools openvpn tinc"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ "$what" = test ]; then
    # Node (for the README's Node producer example): any node+npm on PATH will do; Debian's
    # packages only when there is none (they conflict with other Node installs).
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

# tests/web: playwright-core from the npm registry, pinned by its package-lock.json; npm ci
# when it is not installed or the lock file changed since.
web_deps() {
    [ "$what" = test ] || return 0
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
echo "deps ($what): installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
web_deps
