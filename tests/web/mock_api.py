#!/usr/bin/env python3
"""A stand-in for the bridge's admin port, for working on the dashboard without a bridge.

usage: mock_api.py [--port 8099] [--token T] [--web DIR]

Serves bridge/admin/web/ at GET / and GET /assets/<file>, and the JSON API of bridge/admin/ADMIN.md
(overview, one house with recent requests, add, disable/enable, remove, the request history of
a house, a bridge or all of them, the listeners; Bearer token; JSON errors) from in-memory data
that moves (the history is a made-up daily curve): counters grow, recent requests appear, a disabled house
drops at once and an enabled one comes back two seconds later. GET /mock/redis?down=1 (no
token) makes every API call answer 503 redis_unavailable until ?down=0. Development only: the
browser test (dashboard.test.js) runs against the real bridge.
"""
import argparse
import json
import math
import os
import random
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit, unquote

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PATHS = ["/status", "/echo?x=1", "/metrics", "/api/v1/readings?since=0", "/missing"]

lock = threading.Lock()
redis_down = False
last_t = 0
START = int(time.time() * 1000)


def now_ms():
    return int(time.time() * 1000)


TUN_COUNTERS = ("tun_pkts_in", "tun_pkts_out", "tun_bytes_in", "tun_bytes_out", "tun_drops")


def house(hid, bridge=None, transport=None, rtt=None, loss=0.0, rate=0.0, labels=None,
          tun_index=None, tun_routes=(), tun_pps=0.0):
    """tun_index: its L3 address (index of the pools 100.96.0.0/16, fd7a:6770::/64); with
    tun_pps > 0 it is granted and its tunnel carries that many packets/s each way."""
    addr = [] if tun_index is None else ["100.96.%d.%d" % ((tun_index + 1) // 256, (tun_index + 1) % 256),
                                         "fd7a:6770::%x" % (tun_index + 1)]
    h = {"id": hid, "labels": labels or {}, "created_ms": START - 86400000, "disabled": False,
         "connected": bridge is not None, "bridge": bridge, "transport": transport,
         "since_ms": START - random.randint(1, 7200) * 1000, "last_seen_ms": now_ms(),
         "rtt_ms": rtt, "loss_pct": loss, "req_total": 0, "err_total": 0, "bytes_in": 0,
         "bytes_out": 0, "tun_index": tun_index, "tun_addr": addr, "tun_routes": list(tun_routes),
         "tun_up": bool(tun_pps and bridge), "fec_repaired": 0 if bridge else None,
         "_rate": rate, "_tun_pps": tun_pps, "_back_at": None, "_recent": [], "_acc": 0.0}
    for k in TUN_COUNTERS:
        h[k] = 0 if h["tun_up"] else None
    return h


HOUSES = {h["id"]: h for h in [
    house("farm-1", "b1", "wss", 38, 0.0, 4.0, {"site": "north"}),
    house("farm-2", "b1", "rudp", 212, 3.1, 1.5, {"site": "south", "kind": "pump"}, tun_index=6,
          tun_routes=("10.1.2.0/24", "fd00::/64"), tun_pps=850.0),
    house("shop-7", "b2", "ws", 2, 0.0, 0.3),
    house("barn-3", labels={"site": "east"}, tun_index=9),
]}
BRIDGES = {b: {"id": b, "host": "hub-" + b[1:], "pid": 4000 + int(b[1:]), "since_ms": START - 3600000,
               "houses": 0, "req_total": 0, "err_total": 0, "bytes_in": 0, "bytes_out": 0,
               "connects_total": 3, "auth_failures_total": 0, "redis_rtt_ms": 0.4} for b in ("b1", "b2")}


def advance():
    """Moves the world forward to now (called under the lock on every API call)."""
    global last_t
    t = now_ms()
    dt = (t - last_t) / 1000 if last_t else 0
    last_t = t
    for h in HOUSES.values():
        if h["_back_at"] and t >= h["_back_at"]:
            h.update(connected=True, bridge="b1", transport="wss", since_ms=t, rtt_ms=40,
                     req_total=0, err_total=0, bytes_in=0, bytes_out=0, _back_at=None)
        if not h["connected"]:
            continue
        h["last_seen_ms"] = t - random.randint(0, 900)
        if h["tun_up"]:
            pin, pout = (int(h["_tun_pps"] * random.uniform(0.7, 1.3) * min(dt, 5)) for _ in range(2))
            h["tun_pkts_in"] += pin
            h["tun_pkts_out"] += pout
            h["tun_bytes_in"] += pin * random.randint(80, 1280)
            h["tun_bytes_out"] += pout * random.randint(80, 1280)
            h["tun_drops"] += random.random() < 0.05
            h["fec_repaired"] += int(pin * h["loss_pct"] / 100)
        h["_acc"] += h["_rate"] * random.uniform(0.5, 1.5) * min(dt, 5)
        while h["_acc"] >= 1:
            h["_acc"] -= 1
            path = random.choice(PATHS)
            status = 404 if path == "/missing" else (502 if random.random() < 0.03 else 200)
            ms = int(random.expovariate(1 / ((h["rtt_ms"] or 5) + 10)))
            b = BRIDGES[h["bridge"]]
            bin_, bout = random.randint(100, 4000), random.randint(80, 400)
            for c in (h, b):
                c["req_total"] += 1
                c["err_total"] += status >= 500
                c["bytes_in"] += bin_
                c["bytes_out"] += bout
            h["_recent"].insert(0, {"ts_ms": t, "id": secrets.token_hex(8), "method": "GET",
                                    "path": path, "status": status, "ms": ms,
                                    "error": "upstream_unreachable" if status == 502 else ""})
            del h["_recent"][50:]
    for b in BRIDGES.values():
        held = [h for h in HOUSES.values() if h["connected"] and h["bridge"] == b["id"]]
        b["houses"] = len(held)


RANGES = {"1h": (60, 1), "6h": (360, 5), "24h": (1440, 10)}


def history(scope, ident, rng, scale):
    """The shape of GET .../history: a daily curve of requests per minute times scale, an error
    every 13 minutes, latencies around 40 ms (p99 three times that)."""
    minutes, step = RANGES[rng]
    now_min = now_ms() // 60000
    start = (now_min // step + 1) * step - minutes
    points, tot = [], {"requests": 0, "errors": 0, "bytes_to_house": 0, "bytes_from_house": 0,
                       "latency_samples": 0}
    for i in range(minutes // step):
        p = {"t_ms": (start + i * step) * 60000, "requests": 0, "errors": 0, "bytes_to_house": 0,
             "bytes_from_house": 0, "latency_samples": 0}
        for m in range(start + i * step, min(start + (i + 1) * step, now_min + 1)):
            req = int(scale * (20 + 15 * math.sin((m % 1440) / 1440 * 2 * math.pi)))
            p["requests"] += req
            p["errors"] += int(m % 13 == 0) * min(req, 1)
            p["bytes_to_house"] += req * 300
            p["bytes_from_house"] += req * 2200
            p["latency_samples"] += req
        p["p50_ms"] = 40.4 if p["latency_samples"] else None
        p["p99_ms"] = 121.0 if p["latency_samples"] else None
        for k in tot:
            tot[k] += p[k]
        points.append(p)
    tot["p50_ms"] = 40.4 if tot["latency_samples"] else None
    tot["p99_ms"] = 121.0 if tot["latency_samples"] else None
    tot["error_pct"] = round(100.0 * tot["errors"] / tot["requests"], 2) if tot["requests"] else 0
    return {"scope": scope, "id": ident, "range": rng, "now_ms": now_ms(), "flush_ms": 60000,
            "from_ms": start * 60000, "to_ms": (start + minutes) * 60000, "step_s": step * 60,
            "points": points, "total": tot, "skipped": 0}


LISTENERS = {"bridge": "b1", "host": "hub-1", "history_flush_ms": 60000, "listeners": [
    {"kind": "house", "scheme": "wss", "bind": "0.0.0.0", "port": 8443, "key": None},
    {"kind": "house", "scheme": "rudp", "bind": "0.0.0.0", "port": 8444, "key": "ab" * 32},
    {"kind": "http", "scheme": "http", "bind": "127.0.0.1", "port": 8080, "key": None}]}


def public(h):
    out = {k: v for k, v in h.items() if not k.startswith("_")}
    if not h["connected"]:
        for k in ("bridge", "transport", "since_ms", "rtt_ms", "loss_pct", "req_total",
                  "err_total", "bytes_in", "bytes_out"):
            out.pop(k, None)
        out.update({k: None for k in TUN_COUNTERS + ("fec_repaired",)}, tun_up=False)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-bridge"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def err(self, status, code, msg):
        self.send(status, {"error": code, "message": msg})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        global redis_down
        u = urlsplit(self.path)
        path = u.path
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if method == "GET" and path in ("/", "/index.html"):
            return self.static("index.html")
        if method == "GET" and path.startswith("/assets/"):
            return self.static(path[len("/assets/"):])
        if path == "/mock/redis":
            redis_down = parse_qs(u.query).get("down", ["1"])[0] == "1"
            return self.send(200, {"redis_down": redis_down})
        if not path.startswith("/api/"):
            return self.err(404, "not_found", "no such path")
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.err(401, "unauthorized", "send Authorization: Bearer <token>")
        if not secrets.compare_digest(auth[7:].encode(), self.server.token.encode()):
            return self.err(403, "forbidden", "wrong admin token")
        if redis_down:
            return self.err(503, "redis_unavailable", "Redis does not answer")
        with lock:
            advance()
            return self.api(method, path, raw, parse_qs(u.query))

    def static(self, name):
        if "/" in name or name.startswith("."):
            return self.err(404, "not_found", "no such asset")
        p = os.path.join(self.server.web, name)
        if not os.path.isfile(p):
            return self.err(404, "not_found", "no such asset")
        with open(p, "rb") as f:
            self.send(200, f.read(), TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))

    def api(self, method, path, raw, query):
        parts = [unquote(p) for p in path.split("/")[2:]]
        rng = query.get("range", ["1h"])[0]
        if parts[-1:] == ["history"] and method == "GET":
            if rng not in RANGES:
                return self.err(400, "bad_request", "range: 1h, 6h or 24h")
            if parts == ["history"]:
                return self.send(200, history("all", None, rng, 2.0))
            if len(parts) == 3 and parts[0] == "bridges" and parts[1] in BRIDGES:
                return self.send(200, history("bridge", parts[1], rng, 1.0))
            if len(parts) == 3 and parts[0] == "houses" and parts[1] in HOUSES:
                return self.send(200, history("house", parts[1], rng, HOUSES[parts[1]]["_rate"] / 4))
            return self.err(404, "not_found", "no such house")
        if parts == ["listeners"] and method == "GET":
            return self.send(200, LISTENERS)
        if parts == ["overview"] and method == "GET":
            return self.send(200, {"now_ms": now_ms(), "bridges": list(BRIDGES.values()),
                                   "houses": [public(h) for h in HOUSES.values()]})
        if parts == ["houses"] and method == "POST":
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self.err(400, "bad_request", "malformed JSON")
            if not isinstance(body, dict) or not isinstance(body.get("id"), str) or \
                    not ID_RE.match(body["id"]):
                return self.err(400, "bad_request", "bad id: 1-64 of A-Z a-z 0-9 _ . -")
            labels = body.get("labels", {})
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                return self.err(400, "bad_request", "labels must be an object of strings")
            if body["id"] in HOUSES:
                return self.err(409, "exists", "house already registered")
            HOUSES[body["id"]] = house(body["id"], labels=labels)
            HOUSES[body["id"]]["created_ms"] = now_ms()
            return self.send(201, {"id": body["id"], "secret": secrets.token_hex(32)})
        if len(parts) >= 2 and parts[0] == "houses":
            h = HOUSES.get(parts[1])
            if h is None:
                return self.err(404, "not_found", "house not registered")
            if len(parts) == 2 and method == "GET":
                return self.send(200, dict(public(h), recent=h["_recent"]))
            if len(parts) == 2 and method == "DELETE":
                del HOUSES[parts[1]]
                return self.send(200, {"id": h["id"], "removed": True, "pending": 0})
            if len(parts) == 3 and method == "POST" and parts[2] in ("disable", "enable"):
                if parts[2] == "disable":
                    h.update(disabled=True, connected=False, _back_at=None)
                else:
                    h["disabled"] = False
                    if h["_rate"]:
                        h["_back_at"] = now_ms() + 2000
                return self.send(200, {"id": h["id"], "disabled": h["disabled"]})
        return self.err(405 if parts and parts[0] in ("overview", "houses") else 404,
                        "method_not_allowed" if parts and parts[0] in ("overview", "houses")
                        else "not_found", "no such API call")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--token", default="T")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--web", default=os.path.join(here, "..", "..", "bridge", "admin", "web"))
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.token, srv.web = a.token, a.web
    print(f"mock admin API on http://127.0.0.1:{srv.server_address[1]}/ token={a.token}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
