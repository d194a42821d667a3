#!/usr/bin/env python3
"""deploy.py — what can be checked of deploy/ without a container engine or systemd as PID 1.
Run by tests/integration/deploy.c from the repository root (Debian: python3-yaml).

  deploy.py compose BINDIR               docker-compose.yml against the Compose schema
                                         (docker compose / docker-compose config) and the
                                         wiring the deployment relies on
  deploy.py plan DIR BINDIR              the compose services as plain processes on loopback:
                                         the same command lines and environments, with ports,
                                         hosts, volumes and binaries remapped (JSON on stdout)
  deploy.py dockerfile BUILDDIR          deploy/Dockerfile: parses, its stages and targets hang
                                         together, every apt package exists, the runtime stage
                                         has every library the binaries in BUILDDIR/bin link,
                                         and its build stage builds from the context it copies
  deploy.py units BINDIR                 systemd units: systemd-analyze verify and security
  deploy.py trace UNIT TRACE BIN [DIR]   an strace of a daemon stays inside its unit's sandbox:
                                         system calls, address families, W+X memory, files
                                         (DIR: where the unit lets it write, its StateDirectory)

Exit status 0 when everything holds, 1 with one line per problem on stderr.
"""
import glob
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile

import yaml

DEPLOY = "deploy"
COMPOSE = os.path.join(DEPLOY, "docker-compose.yml")
CLUSTER = os.path.join(DEPLOY, "docker-compose.cluster.yml")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
UNITS = sorted(glob.glob(os.path.join(DEPLOY, "*.service")))
PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)
    print("deploy: " + msg, file=sys.stderr)


def done():
    sys.exit(1 if PROBLEMS else 0)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


# --- Compose: interpolation as Compose does it, then the services ----------------------------

VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(v, env):
    if isinstance(v, dict):
        return {k: interpolate(x, env) for k, x in v.items()}
    if isinstance(v, list):
        return [interpolate(x, env) for x in v]
    if not isinstance(v, str):
        return v

    def rep(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg, val = m.group(3), m.group(4), env.get(name)
        if not op:
            return val or ""
        unset = val is None or (op.startswith(":") and val == "")
        if op.endswith("-"):
            return arg if unset else val
        if unset:
            raise SystemExit("deploy: compose: %s is required: %s" % (name, arg))
        return val

    return VAR.sub(rep, v)


def load_compose(env=None):
    with open(COMPOSE) as f:
        doc = yaml.safe_load(f)
    return interpolate(doc, os.environ if env is None else env)


def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, "") for x in e)
    return {k: "" if v is None else str(v) for k, v in e.items()}


def words(v):
    if v is None:
        return None
    return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]


def depends(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {k: "service_started" for k in d}
    return {k: (v or {}).get("condition", "service_started") for k, v in d.items()}


def mounts(svc):
    """[(source, container path, named)] of a service's volumes (short syntax)."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = v.get("source"), v["target"]
        else:
            parts = v.split(":")
            src, dst = parts[0], parts[1]
        named = not src.startswith((".", "/"))
        out.append((src, dst, named))
    return out


def healthcheck(svc, image):
    hc = svc.get("healthcheck")
    test = hc.get("test") if hc else (image or {}).get("healthcheck")
    if not test or (hc and hc.get("disable")):
        return None
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    if test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", test[1]]
    return list(test[1:]) if test[0] == "CMD" else list(test)


# --- Dockerfile ------------------------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL", "MAINTAINER"}


def parse_dockerfile(path=DOCKERFILE):
    """Stages: [{name, base, parent, instr: [(INSTR, rest)]}], with continuations joined."""
    logical, buf = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            logical.append(buf.strip())
        buf = ""
    if buf.strip():
        problem("Dockerfile: ends inside a line continuation")
    stages, args = [], {}
    for line in logical:
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr not in INSTRUCTIONS:
            problem("Dockerfile: unknown instruction %s" % instr)
            continue
        if instr == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                problem("Dockerfile: bad FROM %s" % rest)
                continue
            base = re.sub(r"\$\{(\w+)\}", lambda a: args.get(a.group(1), ""), m.group(1))
            names = [s["name"] for s in stages]
            stages.append({"name": m.group(2), "base": base,
                           "parent": names.index(base) if base in names else None, "instr": []})
        elif instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
        elif not stages:
            problem("Dockerfile: %s before the first FROM" % instr)
        else:
            stages[-1]["instr"].append((instr, rest))
    return stages


def stage_chain(stages, name):
    idx = [s["name"] for s in stages].index(name)
    chain = []
    while idx is not None:
        chain.insert(0, stages[idx])
        idx = stages[idx]["parent"]
    return chain


def image_config(stages, target):
    """What a container of `target` starts with: entrypoint, cmd, env, user, expose,
    healthcheck (argv or None) — the last word of each along the stage chain."""
    cfg = {"entrypoint": None, "cmd": None, "env": {}, "user": None, "expose": set(),
           "healthcheck": None, "apt": set()}
    for st in stage_chain(stages, target):
        for instr, rest in st["instr"]:
            if instr in ("ENTRYPOINT", "CMD"):
                try:
                    cfg[instr.lower()] = json.loads(rest)
                except ValueError:
                    problem("Dockerfile: %s %s is not in exec form (JSON)" % (instr, rest))
                if instr == "ENTRYPOINT":
                    cfg["cmd"] = None
            elif instr == "ENV":
                for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                    cfg["env"][k] = v.strip('"')
            elif instr == "USER":
                cfg["user"] = rest
            elif instr == "EXPOSE":
                cfg["expose"] |= {p if "/" in p else p + "/tcp" for p in rest.split()}
            elif instr == "HEALTHCHECK":
                if rest.upper() == "NONE":
                    cfg["healthcheck"] = None
                    continue
                m = re.search(r"\bCMD\s+(\[.*\])\s*$", rest)
                if not m:
                    problem("Dockerfile: HEALTHCHECK %s is not CMD in exec form" % rest)
                    continue
                cfg["healthcheck"] = ["CMD"] + json.loads(m.group(1))
            elif instr == "RUN":
                cfg["apt"] |= set(apt_packages(rest))
    return cfg


def apt_packages(run_cmd):
    pkgs = []
    for m in re.finditer(r"apt-get\s+install\s+(.*?)(?:&&|;|$)", run_cmd):
        pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def built_target(svc):
    b = svc.get("build")
    if isinstance(b, dict) and b.get("dockerfile", "").endswith("Dockerfile"):
        return b.get("target")
    return None


# --- plan: compose services as processes -----------------------------------------------------

def free_port():
    """A port free for TCP and UDP on 127.0.0.1 (a service may listen on both)."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            continue
        return port, (t, u)
    raise SystemExit("deploy: no free port")


def cmd_plan(dirname, bindir):
    doc = load_compose()
    stages = parse_dockerfile()
    services = doc["services"]
    bindir = os.path.abspath(bindir)
    compose_dir = os.path.dirname(os.path.abspath(COMPOSE))
    held, ports = [], {}
    for name, svc in services.items():
        for p in svc.get("expose") or []:
            num = str(p).split("/")[0]
            if (name, num) not in ports:
                ports[(name, num)], socks = free_port()
                held.append(socks)
    for socks in held:
        for s in socks:
            s.close()

    # Topological order, ties in file order (a valid sequence of what `up` does in parallel).
    order, seen = [], set()

    def visit(n, stack=()):
        if n in seen:
            return
        if n in stack:
            raise SystemExit("deploy: depends_on cycle through %s" % n)
        for d in depends(services[n]):
            visit(d, stack + (n,))
        seen.add(n)
        order.append(n)

    for n in services:
        visit(n)

    plan = []
    for name in order:
        svc = services[name]
        target = built_target(svc)
        image = image_config(stages, target) if target else None
        own = {num: port for (s, num), port in ports.items() if s == name}
        paths = []
        for src, dst, named in mounts(svc):
            host = os.path.join(dirname, "vol", src) if named else os.path.normpath(
                os.path.join(compose_dir, src))
            if named:
                os.makedirs(host, exist_ok=True)
            paths.append((dst, host))
        paths.sort(key=lambda p: -len(p[0]))

        def remap(s, whole=True):
            for dst, host in paths:
                s = re.sub(r"(?<![\w.-])" + re.escape(dst) + r"(?=/|$|[^\w.-])", host, s)
            for (svc_name, num), port in ports.items():
                s = re.sub(r"(?<![\w.-])" + re.escape(svc_name) + ":" + num + r"(?!\d)",
                           "localhost:%d" % port, s)
            for num, port in own.items():
                s = re.sub(r"(?<![\w.-])(?:127\.0\.0\.1|localhost):" + num + r"(?!\d)",
                           "127.0.0.1:%d" % port, s)
            if whole and s in own:
                s = str(own[s])
            if whole and s == "0.0.0.0":
                s = "127.0.0.1"
            return s

        entry = words(svc.get("entrypoint"))
        cmd = words(svc.get("command"))
        if entry is None and image:
            entry = image["entrypoint"] or []
            if cmd is None:
                cmd = image["cmd"]
        argv = [remap(a, whole=len(a) < 64) for a in (entry or []) + (cmd or [])]
        if argv and argv[0].startswith("/usr/local/bin/"):
            argv[0] = os.path.join(bindir, os.path.basename(argv[0]))
        env = dict(image["env"]) if image else {}
        env.update(env_of(svc))
        env = {k: remap(v) for k, v in env.items()}
        env["PATH"] = bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin")
        prog = os.path.basename(argv[0]) if argv else ""
        role = {"ghostport-bridge": "bridge", "ghostport-house": "house"}.get(prog)
        if not role:
            role = "tool" if svc.get("profiles") else (
                "oneshot" if str(svc.get("restart", "no")) == "no" else "daemon")
        health = healthcheck(svc, {"healthcheck": image["healthcheck"]} if image else None)
        image_health = healthcheck({}, {"healthcheck": image["healthcheck"]}) if image else None
        entry_json = {
            "name": name, "role": role, "argv": argv, "env": env,
            "health": [remap(a) for a in health] if health else None,
            "image_health": [remap(a) for a in image_health] if image_health else None,
            "depends": depends(svc), "ports": {k: v for k, v in own.items()},
        }
        if role == "house":
            entry_json["house_id"] = env.get("GP_ID", "")
            entry_json["bridge_wss"] = " ".join(
                b for b in re.split(r"[\s,]+", env.get("GP_BRIDGE", "")) if b.startswith("wss://"))
        if role == "bridge":
            entry_json["listen"] = int(env.get("GP_LISTEN", "8443"))
        plan.append(entry_json)
    sanitizer = any(SANITIZER.match(so) for so in needed_libs(os.path.join(bindir, "ghostport-bridge")))
    json.dump({"services": plan, "sanitizer": sanitizer}, sys.stdout, indent=1)
    print()


# --- compose: schema and wiring --------------------------------------------------------------

def known_env(binary):
    """The GP_* variables a program reads, from its --help."""
    r = run([binary, "--help"])
    return set(re.findall(r"env\s+(GP_[A-Z0-9_]+)", r.stdout + r.stderr))


def compose_tool():
    if shutil.which("docker") and run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def redis_settings(svc):
    """Redis's effective settings: its config file (when the command names one), then the
    command line's --name value pairs."""
    argv = words(svc.get("command")) or []
    conf = {}
    compose_dir = os.path.dirname(os.path.abspath(COMPOSE))
    files = {dst: src if os.path.isabs(src) else os.path.join(compose_dir, src)
             for src, dst, named in mounts(svc) if not named}
    i = 1
    if len(argv) > 1 and not argv[1].startswith("--"):
        path = files.get(argv[1])
        if not path:
            problem("compose: redis config %s is not a file mounted from deploy/" % argv[1])
        else:
            for line in open(path):
                w = line.split()
                if w and not w[0].startswith("#"):
                    conf[w[0].lower()] = " ".join(w[1:])
        i = 2
    while i < len(argv):
        if argv[i].startswith("--"):
            vals = []
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                vals.append(argv[j])
                j += 1
            conf[argv[i][2:].lower()] = " ".join(vals)
            i = j
        else:
            i += 1
    return conf


def cmd_compose(bindir):
    key = "ab" * 32
    tool = compose_tool()
    if not tool:
        problem("compose: neither `docker compose` nor `docker-compose` found "
                "(Debian: docker-compose; scripts/deps.sh installs it)")
    else:
        env = dict(os.environ, GP_MASTER_KEY=key)
        r = run(tool + ["-f", COMPOSE, "config", "-q"], env=env)
        if r.returncode != 0:
            problem("compose: `%s config` rejects it: %s" % (" ".join(tool), r.stderr.strip()))
        # The master key is required, not silently empty.
        env.pop("GP_MASTER_KEY")
        r = run(tool + ["-f", COMPOSE, "config", "-q"], env=env)
        if r.returncode == 0 or "GP_MASTER_KEY" not in r.stderr:
            problem("compose: config without GP_MASTER_KEY did not fail naming it")
        print("compose: schema checked with %s" % " ".join(tool))

        # The Redis Cluster override: valid merged with the main file, every node in cluster
        # mode with the same persistence and eviction settings.
        if os.path.exists(CLUSTER):
            r = run(tool + ["-f", COMPOSE, "-f", CLUSTER, "config"], env=dict(env, GP_MASTER_KEY=key))
            if r.returncode != 0:
                problem("compose: %s merged with %s is rejected: %s" % (CLUSTER, COMPOSE, r.stderr.strip()))
            else:
                merged = yaml.safe_load(r.stdout)["services"]
                nodes = [n for n, v in merged.items()
                         if (words(v.get("command")) or [""])[0] == "redis-server"]
                for n in nodes:
                    conf = redis_settings(merged[n])
                    for k, v in (("cluster-enabled", "yes"), ("appendonly", "yes"),
                                 ("maxmemory-policy", "noeviction")):
                        if conf.get(k) != v:
                            problem("compose: cluster node %s: %s is %r" % (n, k, conf.get(k)))
                if len(nodes) < 3:
                    problem("compose: the cluster override has %d nodes, want 3" % len(nodes))
                print("compose: cluster override valid, %d nodes" % len(nodes))

    doc = load_compose({"GP_MASTER_KEY": key})
    stages = parse_dockerfile()
    services = doc["services"]
    known = {b: known_env(os.path.join(bindir, b)) for b in
             ("ghostport-bridge", "ghostport-house", "ghostport")}
    roles = {}
    for name, svc in services.items():
        target = built_target(svc)
        image = image_config(stages, target) if target else None
        if target and target not in [s["name"] for s in stages]:
            problem("compose: %s builds target %s, which the Dockerfile does not have" % (name, target))
            continue
        entry = words(svc.get("entrypoint")) or (image or {}).get("entrypoint") or []
        argv = entry + (words(svc.get("command")) or [])
        prog = os.path.basename(argv[0]) if argv else ""
        script = " ".join(argv)
        roles[name] = prog
        for dep, cond in depends(svc).items():
            if dep not in services:
                problem("compose: %s depends on unknown service %s" % (name, dep))
            elif cond == "service_healthy" and not healthcheck(services[dep], {"healthcheck": image_config(
                    stages, built_target(services[dep]))["healthcheck"]} if built_target(services[dep]) else None):
                problem("compose: %s waits for %s to be healthy, which has no health check" % (name, dep))
            elif cond == "service_completed_successfully" and str(services[dep].get("restart")) != "no":
                problem("compose: %s waits for %s to complete, but it restarts" % (name, dep))
        daemon = str(svc.get("restart", "no")) != "no" and not svc.get("profiles")
        if daemon and not healthcheck(svc, {"healthcheck": image["healthcheck"]} if image else None):
            problem("compose: long-running service %s has no health check" % name)
        # Every GP_ variable of a Ghost Port program is one of its options (a typo would be
        # ignored silently by the daemon).
        for var in env_of(svc):
            if not var.startswith("GP_"):
                continue
            progs = [p for p in known if p == prog or re.search(r"\b%s\b" % re.escape(p), script)]
            if progs and not any(var in known[p] for p in progs):
                problem("compose: %s sets %s, which no option of %s reads" % (name, var, "/".join(progs)))
        for src, dst, named in mounts(svc):
            if named and src not in (doc.get("volumes") or {}):
                problem("compose: %s mounts undeclared volume %s" % (name, src))

    bridges = [n for n, p in roles.items() if p == "ghostport-bridge"]
    houses = [n for n, p in roles.items() if p == "ghostport-house"]
    if len(bridges) < 2 or len(houses) < 1:
        problem("compose: want two bridges and a house, found %s and %s" % (bridges, houses))
    benv = [env_of(services[b]) for b in bridges]
    if len({e.get("GP_BRIDGE_ID") for e in benv}) != len(bridges):
        problem("compose: bridges need distinct GP_BRIDGE_ID")
    for var in ("GP_MASTER_KEY", "GP_RUDP_KEY", "GP_REDIS"):
        if len({e.get(var) for e in benv}) != 1 or not benv[0].get(var):
            problem("compose: every bridge needs the same %s" % var)
    for h in houses:
        urls = re.split(r"[\s,]+", env_of(services[h]).get("GP_BRIDGE", "").strip())
        kinds = [u.split("://")[0] for u in urls]
        if "rudp" not in kinds or "wss" not in kinds or kinds.index("wss") < len(kinds) - kinds[::-1].index("rudp") - 1:
            problem("compose: house %s should dial rudp:// first, then wss://: %s" % (h, urls))
        for b in bridges:
            if not any("//%s:" % b in u for u in urls if u.startswith("rudp")) or \
               not any("//%s:" % b in u for u in urls if u.startswith("wss")):
                problem("compose: house %s does not dial %s over both rudp and wss" % (h, b))
    if not any("house add" in " ".join(words(s.get("command")) or []) for s in services.values()):
        problem("compose: no one-shot registers the house (ghostport house add)")

    redis = [n for n, s in services.items() if "redis-server" in (words(s.get("command")) or [""])[0]]
    if len(redis) != 1:
        problem("compose: want one redis-server service, found %s" % redis)
    else:
        conf = redis_settings(services[redis[0]])
        want = {"appendonly": lambda v: v == "yes",
                "appendfsync": lambda v: v in ("everysec", "always"),
                "maxmemory-policy": lambda v: v == "noeviction",
                "notify-keyspace-events": lambda v: "K" in v and ("t" in v or "A" in v)}
        for k, ok in want.items():
            if not ok(conf.get(k, "")):
                problem("compose: redis %s is %r" % (k, conf.get(k)))
        dirs = [dst for src, dst, named in mounts(services[redis[0]]) if named]
        if conf.get("dir") not in dirs:
            problem("compose: redis dir %r is not on a named volume %s" % (conf.get("dir"), dirs))
    print("compose: %d services, bridges %s, houses %s" % (len(services), bridges, houses))
    done()


# --- Dockerfile ------------------------------------------------------------------------------

def dpkg_owner(path):
    for p in (path, path.replace("/usr/lib/", "/lib/", 1), path.replace("/lib/", "/usr/lib/", 1)):
        r = run(["dpkg", "-S", p])
        if r.returncode == 0:
            return r.stdout.split(":")[0].split(",")[0].strip()
    return None


def essential(pkg):
    """In every Debian image: the C library, and what is Essential or required."""
    if pkg == "libc6":
        return True
    r = run(["dpkg-query", "-W", "-f=${Essential} ${Priority}", pkg])
    return r.returncode == 0 and (r.stdout.startswith("yes") or "required" in r.stdout)


def stage_packages(stages, stage):
    """A stage's apt packages and everything apt installs with them."""
    if stage not in [s["name"] for s in stages]:
        return set()
    pkgs = image_config(stages, stage)["apt"]
    r = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + sorted(pkgs))
    return pkgs | {w.strip("<>:") for w in re.findall(r"(?m)^\s*(?:\|?(?:Pre)?Depends: )?(\S+)$", r.stdout)}


def runtime_packages(stages):
    return stage_packages(stages, "runtime")


SANITIZER = re.compile(r"lib(a|ub|t|l|hwa)san\.so")


def needed_libs(binary):
    out = run(["readelf", "-d", binary]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def lib_paths(binary):
    """soname -> resolved path, as the dynamic loader finds them here."""
    out = run(["ldd", binary]).stdout
    return dict(re.findall(r"^\s*(\S+) => (/\S+)", out, re.M))


def dockerignore_excluded(rel, patterns):
    def rx(p):
        p = p.strip("/")
        r = re.escape(p).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        r = r.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.compile(r + "$")

    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        r = rx(pat[1:] if neg else pat)
        if any(r.match(p) for p in prefixes):
            excluded = not neg
    return excluded


def cmd_dockerfile(builddir):
    stages = parse_dockerfile()
    names = [s["name"] for s in stages]
    for s in stages:
        for instr, rest in s["instr"]:
            m = re.search(r"--from=(\S+)", rest)
            if instr == "COPY" and m and m.group(1) not in names[:names.index(s["name"])]:
                problem("Dockerfile: COPY --from=%s: no earlier stage of that name" % m.group(1))
    for t in ("bridge", "house", "cli"):
        if t not in names:
            problem("Dockerfile: no target %s" % t)
    targets = [t for t in ("bridge", "house", "cli") if t in names]
    if names and names[-1] != "bridge":
        problem("Dockerfile: the last stage (the default target) should be the bridge")
    build = stages[0]
    runtime = {t: image_config(stages, t) for t in targets}
    for t, cfg in runtime.items():
        user = (cfg["user"] or "0").split(":")
        if not all(u.isdigit() and int(u) != 0 for u in user):
            problem("Dockerfile: target %s runs as %r, want a fixed non-root uid:gid" % (t, cfg["user"]))
        if not cfg["entrypoint"] or not cfg["entrypoint"][0].startswith("/usr/local/bin/"):
            problem("Dockerfile: target %s has no exec-form ENTRYPOINT in /usr/local/bin" % t)
        if t != "cli":
            if not {"8443/tcp", "4433/udp", "9090/tcp"} <= cfg["expose"]:
                problem("Dockerfile: target %s exposes %s" % (t, sorted(cfg["expose"])))
            hc = cfg["healthcheck"]
            if not hc or "/healthz" not in " ".join(hc):
                problem("Dockerfile: target %s has no HEALTHCHECK on /healthz" % t)
            elif os.path.basename(hc[1]) == "curl" and "curl" not in cfg["apt"]:
                problem("Dockerfile: HEALTHCHECK uses curl, which %s does not install" % t)
            if cfg["env"].get("GP_ADMIN_LISTEN") not in [u.split(":")[-1].split("/")[0] for u in re.findall(
                    r"127\.0\.0\.1:\d+", " ".join(hc or []))]:
                problem("Dockerfile: HEALTHCHECK port is not GP_ADMIN_LISTEN in %s" % t)

    # Every package named exists in Debian (this machine's release is the image's).
    release = open("/etc/debian_version").read().strip()
    if run(["apt-cache", "show", "--no-all-versions", "libc6"]).returncode != 0:
        problem("apt-cache knows no packages: run apt-get update")
    all_pkgs = set()
    for s in stages:
        for instr, rest in s["instr"]:
            if instr == "RUN":
                all_pkgs |= set(apt_packages(rest))
    for p in sorted(all_pkgs):
        if run(["apt-cache", "show", "--no-all-versions", p]).returncode != 0:
            problem("Dockerfile: no Debian package %s (Debian %s here)" % (p, release))
    print("dockerfile: %d apt packages exist (Debian %s)" % (len(all_pkgs), release))

    # The build stage has the -dev package of every pkg-config module the Makefile names.
    build_pkgs = image_config(stages, build["name"])["apt"]
    mods = set()
    for m in re.finditer(r"^PKGS_\w+\s*:?=\s*(.*)$", open("Makefile").read(), re.M):
        mods |= set(m.group(1).split())
    for mod in sorted(mods):
        r = run(["pkg-config", "--path", mod])
        owner = dpkg_owner(r.stdout.strip()) if r.returncode == 0 else None
        if not owner:
            problem("Makefile: pkg-config module %s not found here" % mod)
        elif owner not in build_pkgs:
            problem("Dockerfile: build stage lacks %s (pkg-config %s)" % (owner, mod))

    # A generator the Makefile runs with python3 needs python3 in the build stage.
    if re.search(r"(?m)^\t.*\bpython3\b", open("Makefile").read()) and "python3" not in build_pkgs:
        problem("Dockerfile: the Makefile runs python3, which the build stage does not install")

    # Every library the binaries link: its -dev package (the unversioned lib*.so the linker
    # took) in the build stage, its runtime package in the runtime stage.
    rt = runtime_packages(stages)
    build_closure = stage_packages(stages, build["name"])
    for b in ("ghostport-bridge", "ghostport-house", "ghostport"):
        path = os.path.join(builddir, "bin", b)
        resolved = lib_paths(path)
        for so in needed_libs(path):
            if SANITIZER.match(so):  # `make asan`: the sanitizers' runtimes are no image's business
                continue
            real = resolved.get(so, so)
            owner = dpkg_owner(real)
            if not owner:
                problem("%s: no Debian package owns %s" % (b, so))
            elif owner not in rt and not essential(owner):
                problem("Dockerfile: runtime stage lacks %s (%s needs %s)" % (owner, b, so))
            dev = dpkg_owner(os.path.join(os.path.dirname(real), so.split(".so")[0] + ".so"))
            if dev and dev not in build_closure and not dev.startswith("libc6"):
                problem("Dockerfile: build stage lacks %s (%s links %s)" % (dev, b, so))
    print("dockerfile: build and runtime packages cover the binaries' libraries")

    # The build stage builds from exactly the context it copies, through the .dockerignore.
    ignore = os.path.join(DEPLOY, "Dockerfile.dockerignore")
    patterns = [l.strip() for l in open(ignore) if l.strip() and not l.startswith("#")]
    ctx = tempfile.mkdtemp(prefix="deploy-ctx-", dir=os.path.abspath(builddir))
    try:
        workdir = ctx
        for instr, rest in build["instr"]:
            if instr == "WORKDIR":
                workdir = os.path.join(ctx, rest.lstrip("/"))
                os.makedirs(workdir, exist_ok=True)
            elif instr == "COPY" and "--from" not in rest:
                *srcs, dst = rest.split()
                for src in srcs:
                    for root, dirs, files in os.walk(src) if os.path.isdir(src) else [("", [], [src])]:
                        for f in files:
                            rel = os.path.normpath(os.path.join(root, f))
                            if dockerignore_excluded(rel, patterns):
                                continue
                            relsrc = os.path.relpath(rel, src) if os.path.isdir(src) else os.path.basename(rel)
                            out = os.path.join(workdir, dst, relsrc)
                            os.makedirs(os.path.dirname(out), exist_ok=True)
                            shutil.copy2(rel, out)
                    if dockerignore_excluded(src.rstrip("/"), patterns):
                        problem("Dockerfile: COPY %s, which the .dockerignore excludes" % src)
            elif instr == "RUN" and rest.startswith("make "):
                # As docker build runs it: the image's environment, not ours (BUILD, CI...).
                r = run(["sh", "-c", rest], cwd=workdir, timeout=900,
                        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
                if r.returncode != 0:
                    problem("Dockerfile: the build stage's `%s` fails in its context: %s" %
                            (rest, (r.stdout + r.stderr)[-2000:]))
        made = [t for t, cfg in runtime.items() if os.path.exists(os.path.join(
            workdir, "build", "bin", os.path.basename((cfg["entrypoint"] or ["?"])[0])))]
        for t in sorted(set(runtime) - set(made)):
            problem("Dockerfile: the build stage makes no %s (target %s)" %
                    (os.path.basename((runtime[t]["entrypoint"] or ["?"])[0]), t))
        if made:
            print("dockerfile: the build stage builds the programs of %s from its context" %
                  ", ".join(made))
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    done()


# --- example config files ----------------------------------------------------------------------

CHECK_FLAGS = {
    "bridge": ["--allow-ws"],
    "house": ["--id", "h1", "--secret", "ab" * 32, "--bridge", "ws://127.0.0.1:1/",
              "--upstream", "http://127.0.0.1:1"],
}


def check_config(binary, role, path):
    return run([binary, "--config", path, "--check-config"] + CHECK_FLAGS[role], timeout=30)


def cmd_configs(bindir):
    """deploy/bridge.conf and deploy/house.conf: what scripts/gen-config.py makes of the
    binaries' --help (every option, no stale one), accepted by --check-config as they are and
    with every default uncommented; a bad line refused, naming its line."""
    tmp = tempfile.mkdtemp(prefix="deploy-conf-")
    try:
        r = run([sys.executable, "scripts/gen-config.py", bindir, tmp])
        if r.returncode != 0:
            problem("gen-config.py failed: " + r.stderr)
            done()
        for role in ("bridge", "house"):
            binary = os.path.join(bindir, "ghostport-" + role)
            path = os.path.join(DEPLOY, role + ".conf")
            fresh = open(os.path.join(tmp, role + ".conf")).read()
            if open(path).read() != fresh:
                problem("%s differs from the binary's --help: run scripts/gen-readme.sh" % path)
            r = check_config(binary, role, path)
            if r.returncode != 0 or "configuration ok" not in r.stdout:
                problem("%s: --check-config refused it: %s" % (path, r.stderr.strip()))
            # Every default, uncommented, parses as a config line.
            lines = fresh.splitlines()
            live = [l[1:] if re.match(r"^#[a-z][a-z0-9-]* = \S", l) else l for l in lines]
            n = sum(1 for a, b in zip(lines, live) if a != b)
            full = os.path.join(tmp, role + "-defaults.conf")
            with open(full, "w") as f:
                f.write("\n".join(live) + "\n")
            r = check_config(binary, role, full)
            if r.returncode != 0:
                problem("%s with its %d defaults uncommented: refused: %s" %
                        (path, n, r.stderr.strip()))
            # A bad value: refused, the error names the line.
            bad = os.path.join(tmp, role + "-bad.conf")
            with open(bad, "w") as f:
                f.write(fresh + "max-body = lots\n")
            r = check_config(binary, role, bad)
            where = "line %d" % (len(fresh.splitlines()) + 1)
            if r.returncode == 0 or where not in r.stderr:
                problem("%s: a bad max-body line was not refused with its line number (rc %d): %s"
                        % (role, r.returncode, r.stderr.strip()))
            if not PROBLEMS:
                print("configs: %s lists %d options with defaults; accepted as is and "
                      "uncommented; a bad line refused at %s" % (path, n, where))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done()


# --- systemd units ---------------------------------------------------------------------------

HARDENING = ["ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
             "NoNewPrivileges=yes", "RestrictNamespaces=yes", "LockPersonality=yes",
             "MemoryDenyWriteExecute=yes", "SystemCallArchitectures=native",
             "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
             "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectClock=yes",
             "ProtectHostname=yes", "RestrictRealtime=yes", "RestrictSUIDSGID=yes",
             "ProtectKernelTunables=yes", "ProtectControlGroups=yes"]


def unit_lines(path):
    return [l.strip() for l in open(path) if l.strip() and not l.startswith(("#", ";"))]


def unit_copy(path, bindir, tmp, edit=None):
    text = open(path).read()
    text = re.sub(r"(?m)^(Exec\w+=)/usr/local/bin/", r"\1" + os.path.abspath(bindir) + "/", text)
    if edit:
        text = edit(text)
    out = os.path.join(tmp, os.path.basename(path))
    with open(out, "w") as f:
        f.write(text)
    return out


def verify(paths):
    r = run(["systemd-analyze", "verify", "--man=no"] + paths)
    # verify returns 0 even when it ignores a line it cannot parse: any output is a finding.
    return r.returncode, (r.stdout + r.stderr).strip()


def cmd_units(bindir):
    if not shutil.which("systemd-analyze"):
        problem("systemd-analyze not found (Debian: systemd; scripts/deps.sh installs it)")
        done()
    if len(UNITS) < 2:
        problem("units: want ghostport-bridge.service and ghostport-house.service, have %s" % UNITS)
    tmp = tempfile.mkdtemp(prefix="deploy-units-")
    try:
        copies = [unit_copy(u, bindir, tmp) for u in UNITS]
        rc, out = verify(copies)
        if rc != 0 or out:
            problem("units: systemd-analyze verify: rc=%d %s" % (rc, out))
        # The check itself can fail: a bad value is reported.
        bad = unit_copy(UNITS[0], bindir, tempfile.mkdtemp(dir=tmp),
                        lambda t: t.replace("ProtectSystem=strict", "ProtectSystem=sometimes"))
        if not verify([bad])[1]:
            problem("units: systemd-analyze verify did not notice ProtectSystem=sometimes")
        for u, c in zip(UNITS, copies):
            lines = unit_lines(u)
            for h in HARDENING:
                if h not in lines:
                    problem("units: %s lacks %s" % (u, h))
            if not any(l.startswith("RestrictAddressFamilies=") for l in lines):
                problem("units: %s lacks RestrictAddressFamilies=" % u)
            reload = [l for l in lines if l.startswith("ExecReload=")]
            start = [l for l in lines if l.startswith("ExecStart=")]
            if not reload or reload[-1] != "ExecReload=/bin/kill -HUP $MAINPID":
                problem("units: %s does not end its ExecReload with SIGHUP" % u)
            elif not start or reload[0] != start[0].replace("ExecStart=", "ExecReload=") + " --check-config":
                problem("units: %s does not check the config (its ExecStart + --check-config) "
                        "before the SIGHUP" % u)
            if "house" in u and not any(l.startswith("StateDirectory=") for l in lines):
                problem("units: %s lacks StateDirectory= (its journal)" % u)
            r = run(["systemd-analyze", "security", "--offline=true", "--threshold=20", c])
            level = re.search(r"Overall exposure level for \S+: (\S+ \S+)", r.stdout)
            print("units: %s verified, exposure %s" % (os.path.basename(u), level.group(1) if level else "?"))
            if r.returncode != 0:
                problem("units: %s exposure above 2.0: %s" % (u, level.group(1) if level else r.stderr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done()


# --- a traced daemon against its unit ---------------------------------------------------------

def syscall_groups():
    out = run(["systemd-analyze", "syscall-filter"]).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = line.split()[0]
            groups[cur] = []
        elif cur and line.strip() and not line.strip().startswith("#"):
            groups[cur].append(line.strip().split()[0])
    return groups


def expand(names, groups):
    out = set()
    for n in names:
        if n.startswith("@"):
            out |= expand(groups.get(n, []), groups)
        else:
            out.add(n)
    return out


LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")


def cmd_trace(unit, trace, binary, writable=None):
    lines = unit_lines(unit)
    groups = syscall_groups()
    allow, deny = set(), set()
    for l in lines:
        if l.startswith("SystemCallFilter="):
            v = l.split("=", 1)[1]
            (deny if v.startswith("~") else allow).update(v.lstrip("~").split())
    allowed = expand(allow, groups) - expand(deny, groups)
    families = set()
    for l in lines:
        if l.startswith("RestrictAddressFamilies="):
            families |= set(l.split("=", 1)[1].split())
    # Writable under ProtectSystem=strict: API file systems, PrivateTmp's /tmp (which the
    # daemons do not use: left out, so that a write there is noticed), the StateDirectory.
    ok_paths = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                "/dev/pts", "/dev/ptmx", "/dev/shm", "/proc/self", "/proc/thread-self"]
    if writable:
        ok_paths.append(os.path.abspath(writable))

    started, used, seen_lines = False, set(), 0
    writes, socks, wx, hidden, libs = [], set(), [], set(), set()
    for raw in open(trace, errors="replace"):
        m = LINE.match(raw)
        if not m:
            continue
        call, rest = m.group(2) or m.group(3), m.group(4)
        if not started:
            # Count from the daemon's own execve (strace, setpriv and env come first).
            started = call == "execve" and ('/%s"' % binary) in rest.split(",")[0] and "= 0" in rest
            exe = rest.split('"')[1] if started else None
            continue
        seen_lines += 1
        used.add(call)
        if m.group(2):
            continue
        if call == "socket":
            socks.add(rest.split(",")[0])
        elif call in ("mmap", "mprotect", "pkey_mprotect"):
            prot = rest.split(",")[2 if call == "mmap" else 2]
            if "PROT_EXEC" in prot and (call != "mmap" or "PROT_WRITE" in prot):
                wx.append(raw.strip())
        elif call in ("open", "openat", "creat", "mkdir", "mkdirat", "unlink", "unlinkat",
                      "rename", "renameat", "renameat2", "truncate", "link", "linkat",
                      "symlink", "symlinkat"):
            pm = re.search(r'"([^"]*)"', rest)
            path = pm.group(1) if pm else ""
            if path.startswith(("/home", "/root", "/run/user")):
                hidden.add(path)
            if path.startswith("/proc/") and not re.match(r"/proc/(self|thread-self|\d+)(/|$)", path):
                hidden.add(path)
            if path.startswith("/dev/") and not any(path == p or path.startswith(p + "/")
                                                    for p in ok_paths if p.startswith("/dev")):
                hidden.add(path)
            if re.search(r"\.so(\.[\d.]+)?$", path) and "= -1" not in rest:
                libs.add(path)
            flags = rest.split(",")[2] if call == "openat" else rest
            is_write = call not in ("open", "openat") or re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", flags)
            if is_write and "= -1" not in rest:
                absolute = os.path.abspath(path)
                if not any(absolute == p or absolute.startswith(p.rstrip("/") + "/") for p in ok_paths):
                    writes.append("%s %s" % (call, path))
    name = os.path.basename(unit)
    if not started:
        problem("trace %s: no execve of %s in %s" % (name, binary, trace))
        done()
    if any(SANITIZER.match(so) for so in needed_libs(exe)):
        # ASan's runtime maps its shadow memory, reads /proc and re-execs as it likes: the
        # units are for release builds, checked when `make test` runs.
        print("trace %s: skipped, %s is a sanitizer build" % (name, exe))
        done()
    bad = sorted(used - allowed)
    if bad:
        problem("trace %s: system calls outside SystemCallFilter: %s" % (name, " ".join(bad)))
    if not socks <= families:
        problem("trace %s: sockets of families %s outside RestrictAddressFamilies=%s" %
                (name, sorted(socks - families), " ".join(sorted(families))))
    if wx and "MemoryDenyWriteExecute=yes" in lines:
        problem("trace %s: writable+executable memory (MemoryDenyWriteExecute): %s" % (name, wx[:3]))
    if writes:
        problem("trace %s: writes outside what the unit lets it write: %s" % (name, sorted(set(writes))[:10]))
    if hidden:
        problem("trace %s: touches paths the sandbox hides: %s" % (name, sorted(hidden)[:10]))
    # Libraries loaded with dlopen (not among what the binary links: libwebsockets' event
    # loop plugin) come from a package the image installs too.
    linked = {os.path.realpath(p) for p in lib_paths(exe).values()}
    rt = runtime_packages(parse_dockerfile())
    for lib in sorted(l for l in libs if os.path.realpath(l) not in linked):
        owner = dpkg_owner(lib)
        if owner and owner not in rt and not essential(owner):
            problem("trace %s: loads %s (%s), which the image's runtime stage does not install"
                    % (name, lib, owner))
    if not PROBLEMS:
        print("trace %s: %d calls of %d kinds, all in its filter; sockets %s; no W+X; writes "
              "only in %s" % (name, seen_lines, len(used), " ".join(sorted(socks)),
                              writable or "nothing"))
    done()


def main():
    a = sys.argv[1:]
    if a[:1] == ["plan"] and len(a) == 3:
        return cmd_plan(a[1], a[2])
    if a[:1] == ["compose"] and len(a) == 2:
        return cmd_compose(a[1])
    if a[:1] == ["dockerfile"] and len(a) == 2:
        return cmd_dockerfile(a[1])
    if a[:1] == ["configs"] and len(a) == 2:
        return cmd_configs(a[1])
    if a[:1] == ["units"] and len(a) == 2:
        return cmd_units(a[1])
    if a[:1] == ["trace"] and len(a) in (4, 5):
        return cmd_trace(*a[1:])
    print(__doc__, file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
