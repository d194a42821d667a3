#!/bin/sh
# Writes a program's man page from its own --help and --version with help2man (Debian package
# help2man; `scripts/deps.sh build` installs it). Run by the Makefile into build/man/.
# Usage: scripts/gen-man.sh BINARY OUT.1
# help2man makes the SYNOPSIS of "Usage:" and "or:" lines: a wrapper hands it the help with
# the programs' "usage:" lines spelled so. The CLI's page gets a COMMANDS section, each
# command's `ghostport help COMMAND` for every command its --help lists; the daemons' pages a
# FILES section (the config file their systemd unit reads).
set -eu
bin=$1
out=$2
name=$(basename "$bin")
if ! command -v help2man >/dev/null 2>&1; then
    echo "gen-man: help2man not found (Debian package help2man; scripts/deps.sh build installs it)" >&2
    exit 1
fi
abs=$(cd "$(dirname "$bin")" && pwd)/$name
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gen-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

cat >"$tmp/$name" <<EOF
#!/bin/sh
if [ "\$1" = --help ]; then
    "$abs" --help | sed '1,5s/^usage: /Usage: /; 1,6s/^       \\($name \\)/   or: \\1/; s/ — / - /g'
else
    exec "$abs" "\$@"
fi
EOF
chmod +x "$tmp/$name"

# Text as roff's no-fill lines: backslashes escaped, a leading dot or quote neutralised.
roff_text() {
    sed -e 's/\\/\\e/g' -e "s/^[.']/\\\\\\&&/"
}

inc="$tmp/include"
case "$name" in
ghostport)
    desc="reach HTTP services behind NAT through Redis (the Ghost Port CLI)"
    {
        echo "[COMMANDS]"
        # The rows of --help's "commands:" list: one or two words before the summary column.
        "$abs" --help | sed -n '/^commands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)  .*/\1/p' |
            while read -r cmd; do
                echo ".SS \"ghostport $cmd\""
                echo ".nf"
                # shellcheck disable=SC2086
                "$abs" help $cmd | roff_text
                echo ".fi"
            done
        echo "[SEE ALSO]"
        echo ".BR ghostport-bridge (1),"
        echo ".BR ghostport-house (1)"
    } >"$inc"
    ;;
ghostport-bridge | ghostport-house)
    role=${name#ghostport-}
    if [ "$role" = bridge ]; then
        desc="the Ghost Port bridge: houses dial in, producers talk to Redis"
        other=house
    else
        desc="the Ghost Port house: dials out to a bridge, serves allowlisted local upstreams"
        other=bridge
    fi
    cat >"$inc" <<EOF
[FILES]
.TP
.I /etc/ghostport/$role.conf
"name = value" lines, one per option above (read with \\-\\-config; the one the systemd unit
$name.service names). The example $role.conf installed with the documentation lists every
option with its default; check an edited file with
.B $name \\-\\-config /etc/ghostport/$role.conf \\-\\-check\\-config
before a reload.
[SEE ALSO]
.BR ghostport (1),
.BR ghostport-$other (1)
EOF
    ;;
*)
    echo "gen-man: no page description for $name" >&2
    exit 1
    ;;
esac

help2man --no-info --section=1 --source="Ghost Port" --name="$desc" --include="$inc" \
    --output="$out.tmp" "$tmp/$name"
mv "$out.tmp" "$out"
