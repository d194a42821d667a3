#!/usr/bin/env python3
"""check-layers.py — the include rules of bridge/DESIGN.md ("Layers"), checked.

  scripts/check-layers.py [ROOT]      check the tree at ROOT (default: the repository)
  scripts/check-layers.py --self-test copy the tree to a temp dir, plant forbidden includes,
                                      and check that each one is caught

Rules (exit 1 and one line per violation if broken):
  1. proto/ is the sans-I/O core: it includes no event-loop, socket, thread, Redis, HTTP or
     WebSocket header. It may read files (conf.c: stdio, unistd, sys/stat) and use libsodium
     and zstd. Outside the core: proto/adapters/, the libuv glue of the shared runtime (its own
     archive, libgpuv.a, linked by the programs only, as hiredis keeps its adapters/ beside its
     library): no core file includes an adapter, and an adapter includes only proto/ headers,
     the C library and libuv (no lws, hiredis, curl, jansson, OpenSSL, ...).
  2. bridge/ includes nothing from house/.
  3. house/ includes nothing from bridge/ (the runtime both daemons share is in proto/, its
     libuv glue in proto/adapters/, which both may include).
  4. bridge/'s own modules (X.c + X.h, X a path under bridge/) form no include cycle: X -> Y
     when X.c or X.h includes Y.h (bridge/DESIGN.md, "Layers").
  5. No bridge/ source but bridge/daemon/main.c names the daemon's top-level object (g_br):
     the modules below get what they need at init or through the context of each call.
  6. No bridge/daemon/, bridge/admin/ or bridge/front/ source but main.c defines a mutable
     object at file scope (static or not) or a `static` one in a function: a module's state lives in its
     context (br_X_new, passed to every call), not in a singleton. `const` tables are fine;
     STATE_ALLOWED lists, with the reason, what must stay.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Headers proto/ must not include: I/O, event loops, network, threads, Redis, HTTP, TLS.
FORBIDDEN_IN_PROTO = re.compile(
    r"^(uv\.h|uv/.*|libwebsockets\.h|lws_.*|hiredis/.*|hiredis\.h|curl/.*|jansson\.h|"
    r"openssl/.*|http_parser\.h|sys/socket\.h|sys/un\.h|sys/epoll\.h|sys/select\.h|"
    r"netinet/.*|arpa/.*|netdb\.h|poll\.h|pthread\.h|signal\.h|curses\.h)$")

# The folder of proto/ outside the sans-I/O core: event-loop adapters (libuv), one copy both
# daemons link (libgpuv.a). Core files must not include them.
ADAPTERS = "adapters/"

# What an adapter must not include: any library but libuv (and the C library). Quoted includes
# must resolve inside proto/.
FORBIDDEN_IN_ADAPTER = re.compile(
    r"^(libwebsockets\.h|lws_.*|hiredis/.*|hiredis\.h|curl/.*|jansson\.h|openssl/.*|"
    r"http_parser\.h|sodium\.h|sodium/.*|zstd\.h|criterion/.*|n?curses.*\.h)$")

# Pure exceptions to FORBIDDEN_IN_PROTO, by file: the admin port's request parser (shared by
# both daemons) is pure bytes in, request out. http-parser is a byte parser with no I/O of
# its own, and inet_pton (arpa/inet.h) only converts text to an address, for the Host check.
# Only this file may include them; any other proto/ file including them fails.
PROTO_PURE = {("http_req.c", "http_parser.h"), ("http_req.c", "arpa/inet.h")}

# Exceptions to rule 3: none. The runtime both daemons share (admin port, metrics, logger core,
# buffers, key files) is pure and lives in proto/; the admin port's libuv glue is one adapter
# both include (proto/adapters/uv_admin.c). Keep this empty.
SHARED_EXCEPTIONS = set()

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
LAYERS = ("proto", "bridge", "house")


def sources(root, layer):
    """The .c and .h files under root/layer, as paths relative to it (folders included)."""
    d = os.path.join(root, layer)
    out = []
    for dirpath, _, names in os.walk(d):
        for n in names:
            if n.endswith((".c", ".h")):
                out.append(os.path.relpath(os.path.join(dirpath, n), d))
    return sorted(out)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for m in INCLUDE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1), m.group(2)


def resolve(root, where, quote, name):
    """The layer/file a quoted include names ("x.h": own folder, then proto/ via -Iproto;
    "../bridge/x.h": that folder), or None for a system header."""
    if quote == "<":
        return None
    own = os.path.normpath(os.path.join(where, name))
    if os.path.exists(os.path.join(root, own)):
        return own
    via_proto = os.path.normpath(os.path.join("proto", name))
    if os.path.exists(os.path.join(root, via_proto)):
        return via_proto
    return own


def check(root):
    errors = []
    for layer in LAYERS:
        for f in sources(root, layer):
            rel = f"{layer}/{f}"
            for line, quote, name in includes(os.path.join(root, rel)):
                target = resolve(root, os.path.dirname(rel), quote, name)
                where = f"{rel}:{line}: #include {quote}{name}"
                if layer == "proto" and f.startswith(ADAPTERS):
                    if quote == "<" and FORBIDDEN_IN_ADAPTER.match(name):
                        errors.append(f"{where}: an adapter includes only proto/, the C library "
                                      "and libuv")
                    elif target and not target.startswith("proto/"):
                        errors.append(f"{where}: an adapter includes only proto/, the C library "
                                      "and libuv")
                elif layer == "proto":
                    if target and target.startswith("proto/" + ADAPTERS):
                        errors.append(f"{where}: proto/'s core does not include its adapters "
                                      "(they are I/O, outside libgpproto.a)")
                    elif (quote == "<" and FORBIDDEN_IN_PROTO.match(name)
                            and (f, name) not in PROTO_PURE):
                        errors.append(f"{where}: proto/ is sans-I/O (no sockets, loops, threads, "
                                      "Redis, HTTP)")
                    elif target and not target.startswith("proto/"):
                        errors.append(f"{where}: proto/ includes only proto/")
                elif layer == "bridge" and target and target.startswith("house/"):
                    errors.append(f"{where}: bridge/ must not include house/")
                elif layer == "house" and target and target.startswith("bridge/"):
                    if target not in SHARED_EXCEPTIONS:
                        errors.append(f"{where}: house/ must not include bridge/ (the shared "
                                      "runtime is in proto/)")
    return errors


def bridge_graph(root):
    """bridge/'s module graph: module X is X.c and X.h (X a path under bridge/, e.g. daemon/conn);
    X -> Y when X.c or X.h includes bridge/Y.h."""
    graph = {}
    for f in sources(root, "bridge"):
        mod = f[:-2]
        graph.setdefault(mod, set())
        for _, quote, name in includes(os.path.join(root, "bridge", f)):
            target = resolve(root, os.path.dirname(os.path.join("bridge", f)), quote, name)
            if target and target.startswith("bridge/") and target.endswith(".h"):
                dep = target[len("bridge/"):-2]
                if dep != mod:
                    graph[mod].add(dep)
                    graph.setdefault(dep, set())
    return graph


def bridge_cycles(root):
    """Strongly connected components (size > 1) of bridge_graph."""
    graph = bridge_graph(root)
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):  # Tarjan; the graph is a few dozen nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


# The daemon's top-level object, and the one file allowed to name it.
TOP_OBJECT = re.compile(r"\bg_br\b")
TOP_OWNER = "bridge/daemon/main.c"


def strip_comments(text):
    """C source without its comments, string and character literals (which may name g_br);
    line numbers are kept."""
    return re.sub(r"""/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""",
                  lambda m: "\n" * m.group(0).count("\n") if m.group(0)[0] == "/" else "0",
                  text, flags=re.S)


# Rule 6: the modules below main.c keep no state of their own at file scope. Mutable objects
# defined outside any function (static or not) or `static` inside one, in bridge/daemon/ and
# bridge/admin/ but main.c, are singletons by another name: each module's state lives in the
# context main.c makes and passes to every call (bridge/DESIGN.md, "Layers"). `const` objects
# (tables, script texts) are fine. Allowed, by (file, name), only with the reason why it must
# stay:
STATE_DIRS = ("bridge/daemon/", "bridge/admin/", "bridge/front/")
STATE_ALLOWED = {
    # lws 4.1's log sink (lws_set_log_level) is process-wide and carries no user pointer; an
    # EMFILE on accept(2) reaches the daemon only as one of its lines, so the listening
    # tunnels are listed where that sink can find them (each tunnel adds and removes itself).
    ("bridge/daemon/tunnel.c", "s_log_sinks"),
}
IDENT = re.compile(r"[A-Za-z_]\w*")


def strip_preprocessor(text):
    """Directives (with their continuation lines) blanked; line numbers kept."""
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*",
                  lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M)


def collapse_braces(s):
    """Text with the contents of every {...} removed (struct bodies, initializers)."""
    out, depth = [], 0
    for ch in s:
        if ch == "{":
            if depth == 0:
                out.append("{}")
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def mutable_object(decl, block):
    """The name of the mutable object `decl` (one top-level or block statement, comments
    stripped) defines, or None: a function, a type, an extern, a const object, or (in a
    block) anything but a static."""
    d = " ".join(collapse_braces(decl).split())
    words = IDENT.findall(d)
    if not words or words[0] in ("typedef", "extern", "return", "_Static_assert"):
        return None
    if block and words[0] != "static":
        return None
    head = d.split("=", 1)[0]
    if "(" in head and "(*" not in head.replace("( *", "(*"):
        return None  # a function (prototype or definition), not an object
    if re.fullmatch(r"(static\s+)?(struct|union|enum)\s*\w*\s*\{\}\s*", head):
        return None  # a type declared, no object
    if re.fullmatch(r"(struct|union|enum)\s+\w+\s*", head):
        return None  # a forward declaration
    star = head.rfind("*")
    after = head[star + 1:] if star >= 0 else head
    if re.search(r"\bconst\b", after):
        return None
    names = IDENT.findall(re.sub(r"\[[^\]]*\]", "", head))
    return names[-1] if names else None


def statements(text):
    """(line, text, in_block) of each file-scope declaration and each statement directly in a
    function body that starts with `static` (comments and directives already blanked)."""
    i, n, start = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch == ";":
            lead = len(text[start:i]) - len(text[start:i].lstrip())
            yield text.count("\n", 0, start + lead) + 1, text[start:i], False
            start = i + 1
        elif ch == "{":
            prefix = text[start:i]
            if re.search(r"\)\s*$", prefix) and "=" not in prefix:  # a function body
                depth, j = 1, i + 1
                while j < n and depth:
                    depth += {"{": 1, "}": -1}.get(text[j], 0)
                    j += 1
                body = text[i + 1:j - 1]
                for m in re.finditer(r"(?:^|(?<=[;{}]))\s*(static\b[^;{]*(?:\{[^;]*?\})?[^;]*);",
                                     body):
                    yield text.count("\n", 0, i + 1 + m.start(1)) + 1, m.group(1), True
                i, start = j, j
                continue
            depth, j = 1, i + 1  # a struct body or an initializer: part of this declaration
            while j < n and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            i = j
            continue
        i += 1


def module_state(root):
    """Rule 6: mutable file-scope (or block-scope static) objects below main.c."""
    errors = []
    for f in sources(root, "bridge"):
        rel = f"bridge/{f}"
        if rel == TOP_OWNER or not rel.startswith(STATE_DIRS):
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            text = strip_preprocessor(strip_comments(fh.read()))
        for line, decl, block in statements(text):
            name = mutable_object(decl, block)
            if name and (rel, name) not in STATE_ALLOWED:
                errors.append(f"{rel}:{line}: mutable {'static' if block else 'file-scope'} "
                              f"object `{name}` (module state belongs in its context, made by "
                              f"{TOP_OWNER}; tables are `static const`)")
    return errors


def bridge_rules(root):
    """Rules 4, 5 and 6: include cycles among bridge/ modules, g_br named below main.c, and
    module state outside a context."""
    errors = []
    for comp in bridge_cycles(root):
        errors.append(f"bridge/: include cycle among modules: {' <-> '.join(comp)} (a module "
                      "reports upward through callbacks instead of including its caller)")
    for f in sources(root, "bridge"):
        rel = f"bridge/{f}"
        if rel == TOP_OWNER:
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            text = strip_comments(fh.read())
        for n, line in enumerate(text.split("\n"), 1):
            if TOP_OBJECT.search(line):
                errors.append(f"{rel}:{n}: names g_br, the daemon's top-level object (only "
                              f"{TOP_OWNER} may; pass a context at init)")
    return errors + module_state(root)


def run(root):
    errors = check(root)
    bridge_errors = bridge_rules(root)
    for e in errors + bridge_errors:
        print(f"check-layers: {e}", file=sys.stderr)
    if errors or bridge_errors:
        print(f"check-layers: FAILED ({len(errors)} forbidden includes, {len(bridge_errors)} "
              "bridge/ module violations)", file=sys.stderr)
        return 1
    print("check-layers: ok (proto/ sans-I/O, its adapters libuv only; bridge/ and house/ apart"
          + (f" but for {len(SHARED_EXCEPTIONS)} shared headers" if SHARED_EXCEPTIONS else "")
          + "; bridge/ modules acyclic, g_br only in main.c, no module state outside a "
          "context)")
    return 0


def self_test(root):
    """Each planted include must make the check fail; the untouched copy must pass."""
    plants = [
        ("proto/frame.c", "#include <uv.h>\n"),
        ("proto/rudp_ack.c", "#include <sys/socket.h>\n"),
        ("proto/metrics.c", "#include <http_parser.h>\n"),  # allowed in http_req.c only
        ("bridge/daemon/entry.c", '#include "../../house/house.h"\n'),
        ("house/reqcheck.c", '#include "../bridge/log.h"\n'),
        ("house/admin.c", '#include "../bridge/admin/api_body.h"\n'),
        # proto/adapters/: the core may not reach its adapters, an adapter only libuv
        ("proto/metrics.c", '#include "adapters/uv_admin.h"\n'),
        ("proto/adapters/uv_admin.c", "#include <hiredis/hiredis.h>\n"),
        ("proto/adapters/uv_admin.c", '#include "../../bridge/log.h"\n'),
        # bridge/ rules: conn.h already sits below house.h, so this closes a cycle
        ("bridge/daemon/conn.c", '#include "house.h"\n'),
        ("bridge/daemon/house.c", "static int planted(void) { return g_br.stopping; }\n"),
        # module state at file scope, and a static in a function, below main.c
        ("bridge/daemon/flood.c", "static unsigned planted_count;\n"),
        ("bridge/admin/api.c", 'static br_script s_planted = {"return 1", ""};\n'),
        ("bridge/daemon/janitor.c", "void planted(void) { static int calls; calls++; }\n"),
    ]
    me = os.path.abspath(__file__)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="gp-layers-") as tmp:
        for layer in LAYERS:
            os.makedirs(os.path.join(tmp, layer), exist_ok=True)
            for f in sources(root, layer):
                os.makedirs(os.path.dirname(os.path.join(tmp, layer, f)), exist_ok=True)
                shutil.copy(os.path.join(root, layer, f), os.path.join(tmp, layer, f))
        clean = subprocess.run([sys.executable, me, tmp], capture_output=True)
        if clean.returncode != 0:
            print("check-layers self-test: the untouched copy fails", file=sys.stderr)
            failures += 1
        for path, line in plants:
            p = os.path.join(tmp, path)
            with open(p, encoding="utf-8") as f:
                orig = f.read()
            with open(p, "w", encoding="utf-8") as f:
                f.write(line + orig)
            r = subprocess.run([sys.executable, me, tmp], capture_output=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(orig)
            if r.returncode == 0:
                print(f"check-layers self-test: planted {line.strip()} in {path} passed",
                      file=sys.stderr)
                failures += 1
    if failures:
        print(f"check-layers self-test: FAILED ({failures})", file=sys.stderr)
        return 1
    print(f"check-layers self-test: ok ({len(plants)} planted violations caught)")
    return 0


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        return self_test(root)
    return run(args[0] if args else root)


if __name__ == "__main__":
    sys.exit(main())
