#!/bin/sh
# Regenerates README.md from scripts/readme-template.md: embeds the producer examples
# verbatim (the readme test checks they match) and the --help of the three binaries; and the
# example config files deploy/bridge.conf and deploy/house.conf (scripts/gen-config.py; the
# deploy tests check they match the binaries).
# Usage: scripts/gen-readme.sh [BIN_DIR]   (default build/bin)
set -eu
cd "$(dirname "$0")/.."
BIN=${1:-${BUILD:-build}/bin}
python3 - "$BIN" <<'PY'
import subprocess, sys
b = sys.argv[1]
def strip_shebang(s):
    return s.split("\n", 1)[1] if s.startswith("#!") else s
def run(*a):
    p = subprocess.run(a, capture_output=True, text=True)
    return p.stdout + p.stderr
t = open("scripts/readme-template.md").read()
for name in ("producer.sh", "producer.py", "producer.js"):
    t = t.replace("@@%s@@" % name, strip_shebang(open("scripts/examples/" + name).read()).rstrip("\n"))
t = t.replace("@@redis-users.acl@@", open("deploy/redis-users.acl").read().rstrip("\n"))
# The stream contract, from its one source (proto/STREAMS.md): its sections from "Opening" up
# to the implementation notes, headings one level down.
sm = open("proto/STREAMS.md").read()
sa, sb = sm.index("## Opening"), sm.index("## How a bridge learns")
t = t.replace("@@streams-contract@@", sm[sa:sb].replace("\n## ", "\n#### ").replace("## Opening", "#### Opening", 1).rstrip("\n"))
# The version number (the Makefile's VERSION) as the CLI reports it: "ghostport 0.1.0 (git ...)".
t = t.replace("@@version@@", run(b + "/ghostport", "--version").split()[1])
t = t.replace("@@cli-help@@", run(b + "/ghostport", "--help").rstrip("\n"))
cmds = "".join(run(b + "/ghostport", "help", *c.split()) for c in ("house add", "house list", "house rm", "house tun", "house disable", "house enable", "top", "request", "connect", "forward"))
t = t.replace("@@cli-cmds@@", cmds.rstrip("\n"))
t = t.replace("@@bridge-help@@", run(b + "/ghostport-bridge", "--help").rstrip("\n"))
t = t.replace("@@house-help@@", run(b + "/ghostport-house", "--help").rstrip("\n"))
assert "@@" not in t, "unreplaced placeholder"
open("README.md", "w").write(t)
PY
python3 scripts/gen-config.py "$BIN" deploy
