#!/usr/bin/env python3
"""A small HTTP/1.1 upstream for Ghost Port's tests and demo (Python standard library only).

    python3 tests/upstream.py --port 0      # prints "listening PORT" once ready

Endpoints (any method unless noted):
  /echo           JSON: method, path, query, headers, body_len, body_sha256.
                  With ?raw=1 the body is echoed back as is, with the request's content-type.
  /status/N       responds with status N and a short text body
  /bytes/N?seed=S N deterministic pseudo-random bytes (application/octet-stream);
                  X-Sha256 header carries their sha256
  /slow?ms=N      waits N ms, then answers 200 "slow" (&bytes=M: M pseudo-random bytes)
  /hits?id=X      how many requests carried X-Frame-Id: X so far (JSON {"id":..,"hits":n});
                  without id: the whole table
  /headers        JSON object of the request headers (lower-cased names)
  /seen           JSON list of the raw request targets received so far, in order (not
                  counting requests for /seen itself): what a house really asked for
"""
import argparse
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HITS = {}
HITS_LOCK = threading.Lock()
SEEN = []  # raw request targets, as received


def pseudo_random(n, seed):
    """Deterministic bytes: sha256 in counter mode over the seed (same in the C harness)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(("%s:%d" % (seed, counter)).encode()).digest()
        counter += 1
    return bytes(out[:n])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gp-upstream/1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms on Linux), which would be measured as tunnel latency.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: %s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, body, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, obj, extra=None):
        self.send(status, (json.dumps(obj, sort_keys=True) + "\n").encode(), extra=extra)

    def handle_any(self):
        body = self.read_body()
        if self.path == "/seen":
            with HITS_LOCK:
                return self.send_json(200, list(SEEN))
        with HITS_LOCK:
            SEEN.append(self.path)
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        fid = self.headers.get("X-Frame-Id")
        if fid is not None:
            with HITS_LOCK:
                HITS[fid] = HITS.get(fid, 0) + 1
        route = parts[0] if parts else ""
        try:
            if route == "echo":
                if query.get("raw") == "1":
                    ctype = self.headers.get("Content-Type", "application/octet-stream")
                    return self.send(200, body, ctype)
                return self.send_json(200, {
                    "method": self.command,
                    "path": url.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body_len": len(body),
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                })
            if route == "status" and len(parts) == 2:
                code = int(parts[1])
                if not 200 <= code <= 599:
                    return self.send_json(400, {"error": "status must be 200..599"})
                return self.send(code, ("status %d\n" % code).encode(), "text/plain")
            if route == "bytes" and len(parts) == 2:
                n = int(parts[1])
                if not 0 <= n <= 256 * 1024 * 1024:
                    return self.send_json(400, {"error": "size out of range"})
                data = pseudo_random(n, query.get("seed", "0"))
                return self.send(200, data, "application/octet-stream",
                                 {"X-Sha256": hashlib.sha256(data).hexdigest()})
            if route == "slow":
                time.sleep(int(query.get("ms", "1000")) / 1000.0)
                if "bytes" in query:  # a slow large answer (pseudo-random, incompressible)
                    data = pseudo_random(int(query["bytes"]), "slow")
                    return self.send(200, data, "application/octet-stream")
                return self.send(200, b"slow\n", "text/plain")
            if route == "hits":
                with HITS_LOCK:
                    if "id" in query:
                        return self.send_json(200, {"id": query["id"],
                                                    "hits": HITS.get(query["id"], 0)})
                    return self.send_json(200, dict(HITS))
            if route == "headers":
                return self.send_json(200, {k.lower(): v for k, v in self.headers.items()})
            return self.send_json(404, {"error": "not found", "path": url.path})
        except (ValueError, KeyError) as e:
            return self.send_json(400, {"error": str(e)})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    ap.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    args = ap.parse_args()
    srv = Server((args.bind, args.port), Handler)
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
