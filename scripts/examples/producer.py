#!/usr/bin/env python3
"""Ghost Port producer in Python (Debian: python3-redis): send one request, print the reply."""
import json
import os
import sys
import time
import uuid

import redis

# GP_REDIS: redis://[user:password@]host:port/db, or rediss://... for TLS (GP_REDIS_CA_FILE:
# its CA); REDISCLI_AUTH: the password, if it is not in the URL.
url = os.environ.get("GP_REDIS", "redis://127.0.0.1:6379/0")
opts = {}
if os.environ.get("REDISCLI_AUTH"):
    opts["password"] = os.environ["REDISCLI_AUTH"]
if url.startswith("rediss://") and os.environ.get("GP_REDIS_CA_FILE"):
    opts["ssl_ca_certs"] = os.environ["GP_REDIS_CA_FILE"]
r = redis.Redis.from_url(url, **opts)
house = os.environ.get("GP_HOUSE", "demo")
frame_id = str(uuid.uuid4())
reply_key = f"gp:rep:{frame_id}"

r.xadd(f"gp:{{{house}}}:req", {
    "id": frame_id,
    "method": "POST",
    "path": "/echo?from=python",
    "headers": json.dumps({"content-type": "application/json"}),
    "body": json.dumps({"hello": "house"}).encode(),
    "timeout_ms": 5000,
    "reply": reply_key,
}, maxlen=10000, approximate=True)

# Read reply entries until final=1; large bodies come in several entries, in order.
status, headers, error, body, last = None, {}, None, b"", "0-0"
deadline = time.monotonic() + 5 + 2
while time.monotonic() < deadline:
    streams = r.xread({reply_key: last}, block=1000)
    for entry_id, f in (streams[0][1] if streams else []):
        last = entry_id
        if status is None:
            status = int(f[b"status"])
            headers = json.loads(f.get(b"headers", b"{}"))  # names are lower-case
            error = f.get(b"error")
        body += f.get(b"body", b"")
        if f.get(b"final") == b"1":
            r.delete(reply_key)
            if error:
                sys.exit(f"error {status} {error.decode()}: {f.get(b'message', b'').decode()}")
            print(status, headers.get("content-type"))
            print(body.decode(errors="replace"))
            sys.exit(0 if status < 400 else 1)
sys.exit("no reply before the deadline")
