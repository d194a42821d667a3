#!/bin/sh
# Makes one Debian package out of a staged install (`make deb` runs it once per program):
#   scripts/deb.sh PACKAGE ROOT VERSION OUTDIR
# ROOT holds the files as `make install-<program> DESTDIR=ROOT PREFIX=/usr ...` left them; this
# adds what a .deb has besides: binaries without debug info (symbols kept, as in the Docker
# images), man pages gzipped, the daemons' config file as a conffile in /etc/ghostport and
# their maintainer scripts (the ghostport group and user, the config's owner and mode, the unit
# restarted on upgrade if running and stopped on removal), md5sums, and a control file whose Depends dpkg-shlibdeps computes from
# the binary's shared libraries (dpkg-dev). Writes OUTDIR/PACKAGE_VERSION_ARCH.deb with
# dpkg-deb, files owned by root.
set -eu
pkg=$1
root=$2
version=$3
out=$4
for t in dpkg-deb dpkg-shlibdeps; do
    command -v "$t" >/dev/null 2>&1 || {
        echo "deb: $t not found (Debian package dpkg-dev; scripts/deps.sh build installs it)" >&2
        exit 1
    }
done
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-Ghost Port <ghostport@localhost>}

# Per package: the program, the daemon's role (its config and unit), what dpkg-shlibdeps cannot
# see, and the description.
role=""
depends=""
case "$pkg" in
ghostport-bridge)
    prog=ghostport-bridge role=bridge
    # libwebsockets loads its libuv event loop as a plugin (dlopen): no linker sees it.
    # adduser: the postinst's group and user.
    depends="adduser, libwebsockets-evlib-uv"
    suggests="redis-server, ghostport-cli"
    summary="Ghost Port bridge: houses dial in, producers talk to Redis"
    long="The bridge accepts houses (ghostport-house) over wss:// and rudp:// and serves the
requests producers add to Redis streams, writing the replies back. Bridges keep no
state of their own: run one or several against the same Redis.
The unit ghostport-bridge.service reads /etc/ghostport/bridge.conf; it is not
enabled on installation."
    ;;
ghostport-house)
    prog=ghostport-house role=house
    depends="adduser"
    suggests="ghostport-cli"
    summary="Ghost Port house: dials out to a bridge, serves allowlisted local upstreams"
    long="The house runs on a machine behind NAT, CGNAT or a firewall: it dials out to one
or more Ghost Port bridges and answers the HTTP requests and TCP streams they hand
it from the upstreams it is configured with, and nothing else.
The unit ghostport-house.service reads /etc/ghostport/house.conf; it is not
enabled on installation."
    ;;
ghostport-cli)
    prog=ghostport
    suggests="bash-completion"
    summary="Ghost Port CLI: houses, requests, TCP streams and a live view through Redis"
    long="ghostport registers and removes houses, sends requests to them, opens TCP streams
(ssh -o ProxyCommand, local port forwarding), makes the bridges' rudp:// keys and
shows bridges and houses live (ghostport top). It talks to Redis only."
    ;;
*)
    echo "deb: unknown package $pkg" >&2
    exit 2
    ;;
esac

bin="$root/usr/bin/$prog"
[ -x "$bin" ] || {
    echo "deb: $bin missing (make install-... DESTDIR=$root PREFIX=/usr first)" >&2
    exit 1
}
strip --strip-debug --remove-section=.comment "$bin"
find "$root/usr/share/man" -name '*.[0-9]' -exec gzip -9nf {} +

rm -rf "$root/DEBIAN"
mkdir -p "$root/DEBIAN"
if [ -n "$role" ]; then
    # The example config (every option commented out, with its default) as the conffile the
    # unit reads: dpkg keeps an admin's edits across upgrades.
    install -d "$root/etc/ghostport"
    install -m 644 "$root/usr/share/doc/$pkg/examples/$role.conf" "$root/etc/ghostport/$role.conf"
    echo "/etc/ghostport/$role.conf" >"$root/DEBIAN/conffiles"
    unit="$prog.service"
    cat >"$root/DEBIAN/postinst" <<EOF
#!/bin/sh
# $pkg: the group its unit's DynamicUser runs in (SupplementaryGroups=ghostport) and a
# system user of that name for running it without systemd; /etc/ghostport readable by the
# group only. The unit is not enabled: edit /etc/ghostport/$role.conf first, then
# systemctl enable --now $unit
set -e
if [ "\$1" = configure ]; then
    getent group ghostport >/dev/null || addgroup --system --quiet ghostport
    getent passwd ghostport >/dev/null ||
        adduser --system --quiet --ingroup ghostport --no-create-home --home /nonexistent \\
            --shell /usr/sbin/nologin ghostport
    for f in /etc/ghostport /etc/ghostport/$role.conf; do
        dpkg-statoverride --list "\$f" >/dev/null && continue
        chgrp ghostport "\$f"
        if [ -d "\$f" ]; then chmod 0750 "\$f"; else chmod 0640 "\$f"; fi
    done
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        # An upgrade: a running daemon moves to the new binary (try-restart: only if running).
        if [ -n "\$2" ]; then
            systemctl try-restart $unit >/dev/null 2>&1 || true
        fi
    fi
fi
exit 0
EOF
    cat >"$root/DEBIAN/prerm" <<EOF
#!/bin/sh
# $pkg: a running $unit is stopped before its binary goes.
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop $unit >/dev/null 2>&1 || true
fi
exit 0
EOF
    purge_state=""
    if [ "$role" = house ]; then
        purge_state="
    # StateDirectory= (the journal), owned by the unit's dynamic user.
    rm -rf /var/lib/ghostport-house /var/lib/private/ghostport-house"
    fi
    cat >"$root/DEBIAN/postrm" <<EOF
#!/bin/sh
# $pkg: systemd forgets the unit; a purge removes its state. The ghostport group and
# user stay (files may still belong to them).
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "\$1" = purge ]; then$purge_state
    rmdir /etc/ghostport 2>/dev/null || true
fi
exit 0
EOF
    chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
fi

# Depends: the packages of the binary's shared libraries, at the versions its symbols need.
# dpkg-shlibdeps wants a source tree's debian/control: a minimal one in a scratch directory.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/debian"
printf 'Source: ghostport\n\nPackage: %s\nArchitecture: any\n' "$pkg" >"$tmp/debian/control"
binabs=$(cd "$(dirname "$bin")" && pwd)/$prog
shlibs=$(cd "$tmp" && dpkg-shlibdeps -O "$binabs" 2>"$tmp/err") || {
    cat "$tmp/err" >&2
    exit 1
}
shlibs=${shlibs#shlibs:Depends=}
depends="$shlibs${depends:+, $depends}"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    echo "Recommends: ca-certificates"
    echo "Suggests: $suggests"
    echo "Section: net"
    echo "Priority: optional"
    echo "Description: $summary"
    echo "$long" | sed 's/^/ /'
} >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    xargs md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
rm -f "$out/${pkg}_"*.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_${arch}.deb" >/dev/null
echo "deb: $out/${pkg}_${version}_${arch}.deb (Depends: $depends)"
