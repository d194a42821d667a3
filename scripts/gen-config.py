#!/usr/bin/env python3
"""Writes the example config files deploy/bridge.conf and deploy/house.conf from the daemons'
--help: every option with its help and its default, commented out, so that the files list
exactly what the binaries accept. Run by scripts/gen-readme.sh; the deploy tests regenerate
them and fail when the committed files differ.

Usage: scripts/gen-config.py BIN_DIR OUT_DIR"""
import os
import re
import subprocess
import sys
import textwrap

OPTION = re.compile(r"^  --(\S+)(?: (?:VALUE|N))?\s+(.*) \(env (GP_\w+)(, repeatable)?(?:, default (.*))?\)$")
SKIP = {"config", "help", "check-config"}  # flags, not settings

HEADER = """\
# ghostport-{role} configuration: /etc/ghostport/{role}.conf, read with
#   ghostport-{role} --config /etc/ghostport/{role}.conf   (deploy/ghostport-{role}.service)
#
# One "name = value" per line; '#' starts a comment; a value may be "double-quoted". Every
# name is also a flag (--name value) and an environment variable (GP_NAME, upper case, '-'
# as '_'): defaults < this file < environment < flags. Options marked [SIGHUP] are applied
# again on `systemctl reload ghostport-{role}` (kill -HUP); the others need a restart. Check
# an edited file before reloading:
#   ghostport-{role} --config /etc/ghostport/{role}.conf --check-config
#
{needs}
# Every option follows, with its default, commented out.
"""

NEEDS = {
    "bridge": """\
# A production bridge sets at least redis, tls-cert and tls-key; most also set rudp-listen
# with rudp-key, master-key, and admin-listen with admin-token-file (README "Operating").""",
    "house": """\
# A house sets at least id, secret-file (written by `ghostport house add`), one bridge line
# per bridge (wss://host:port/, or rudp://host:port with bridge-key), and the upstreams it may
# call: upstream and/or service lines. Nothing else is reachable through it.""",
}


def sample(binary, role):
    p = subprocess.run([binary, "--help"], capture_output=True, text=True)
    out = [HEADER.format(role=role, needs=NEEDS[role]).rstrip("\n")]
    n = 0
    for line in (p.stdout + p.stderr).splitlines():
        m = OPTION.match(line)
        if not m or m.group(1) in SKIP:
            continue
        name, help_, env, repeat, default = m.groups()
        n += 1
        extra = " One line each." if repeat and "repeat" not in help_ else ""
        out.append("")
        out.extend(textwrap.wrap(help_ + "." + extra, 94, initial_indent="# ",
                                 subsequent_indent="# ", break_on_hyphens=False))
        out.append(("#%s = %s" % (name, default if default is not None else "")).rstrip())
    if n < 10:
        sys.exit("gen-config: %s --help listed only %d options" % (binary, n))
    return "\n".join(out).rstrip() + "\n"


def main():
    bindir, outdir = sys.argv[1], sys.argv[2]
    for role in ("bridge", "house"):
        text = sample(os.path.join(bindir, "ghostport-" + role), role)
        with open(os.path.join(outdir, role + ".conf"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
