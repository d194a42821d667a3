#!/usr/bin/env python3
"""Writes the libFuzzer seed corpora under tests/fuzz/seeds/ (run from the repo root).

Frames are built here from the layout in proto/frame.h, independently of the C encoder, so
the seeds double as a cross-check of the wire format: fuzz_frame aborts if any of them
decodes to something that does not re-encode to the same bytes."""
import os
import struct

def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">H", len(b)) + b

def headers(pairs):
    out = struct.pack(">H", len(pairs))
    for n, v in pairs:
        out += s(n) + struct.pack(">I", len(v)) + v.encode()
    return out

def frame(ftype, payload, stream=0, flags=0):
    return struct.pack(">BBBBII", 1, ftype, flags, 0, stream, len(payload)) + payload

N1, N2 = bytes(range(32)), bytes(range(32, 64))
H = [("content-type", "application/json"), ("x-a", "")]
FRAMES = {
    "hello": frame(1, bytes([1, 1]) + s("house-1") + N1),
    "challenge": frame(2, N1 + N2),
    "auth": frame(3, N2),
    "welcome": frame(4, s("bridge-1") + struct.pack(">IIIQ", 1 << 20, 5000, 0, 7)),
    "req_head": frame(5, s("id-1") + s("POST") + s("/x?y=1") + s("") + headers(H)
                      + struct.pack(">IQ", 5000, 11), stream=1),
    "req_head_fin": frame(5, s("id-2") + s("GET") + s("/") + s("svc") + headers([])
                          + struct.pack(">IQ", 30000, (1 << 64) - 1), stream=2, flags=1),
    "req_body": frame(6, b"hello world", stream=1, flags=1),
    "req_body_zstd": frame(6, bytes.fromhex("28b52ffd2005290000616263"), stream=1, flags=3),
    "resp_head": frame(7, struct.pack(">H", 504) + headers(H) + s("timeout") + s("slow")
                       + struct.pack(">Q", 0), stream=1),
    "resp_body": frame(8, b"", stream=1, flags=1),
    "cancel": frame(9, s("deadline"), stream=3),
    "ping": frame(10, struct.pack(">Q", 123456789)),
    "pong": frame(11, struct.pack(">Q", 123456789)),
    "credit": frame(12, struct.pack(">I", 65536), stream=1),
    "goaway": frame(13, struct.pack(">H", 1) + s("draining")),
    "l3_req": frame(18, struct.pack(">H", 1280) + s("192.168.1.0/24,fd00:1::/64")),
    "l3_grant": frame(19, struct.pack(">H", 200) + s("") + s("") + s("100.96.0.7,fd7a::7")
                      + s("100.96.0.0/16,fd7a::/64") + s("192.168.1.0/24")
                      + struct.pack(">H", 1280)),
}

def write(target, name, data):
    d = os.path.join("tests", "fuzz", "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# fuzz_frame input: byte 0 selects how many slice-size bytes follow, then the stream.
for name, data in FRAMES.items():
    write("fuzz_frame", name, b"\x00" + data)
write("fuzz_frame", "all_sliced", b"\x03\x00\x04\x0b" + b"".join(FRAMES.values()))
write("fuzz_frame", "exchange", b"\x02\x01\x10" + FRAMES["req_head"] + FRAMES["req_body"]
      + FRAMES["resp_head"] + FRAMES["resp_body"])
write("fuzz_frame", "too_large", b"\x00" + struct.pack(">BBBBII", 1, 6, 0, 0, 1, 1 << 20))

write("fuzz_conf", "basic", b'# comment\nname = "quoted # value"\nport = 4k\nflag = yes\n'
      b"fn = a\nfn = b # c\n\n")
write("fuzz_conf", "argv", b"--port=12\x00--name\x00v\x00--flag\x00pos\x00--\x00--fn=x")
write("fuzz_conf", "errors", b"port = -6\nname \"x\nflag = maybe\n= 1\n")

write("fuzz_secret", "hex", b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
write("fuzz_secret", "sealed_shape", b"enc1:" + b"A" * 96)
write("fuzz_secret", "seal_input", bytes(range(32)) + b"house-7")

# fuzz_journal input: byte 0 even: a journal's bytes after the magic; odd: (u16 length,
# payload) chunks the target seals into records. Records are built from the layout in
# house/journal.h, with the check (BLAKE2b-128, first 8 bytes) computed here: fuzz_journal
# aborts if a record does not re-encode to the same bytes.
import hashlib

def jpayload(rtype, keep, fid, method, path, status=None, hdrs=(), body=b""):
    p = struct.pack(">BQ", rtype, keep) + s(fid) + s(method) + s(path)
    if rtype == 2:
        p += struct.pack(">H", status) + headers(list(hdrs)) + struct.pack(">I", len(body)) + body
    return p

def jrec(payload):
    head = struct.pack(">I", len(payload)) + payload
    return head + hashlib.blake2b(head, digest_size=16).digest()[:8]

LIVE, PAST = (1 << 40) + 600000, (1 << 40) - 1
J_START = jpayload(1, LIVE, "f-1", "GET", "/slow?ms=1500")
J_DONE = jpayload(2, LIVE, "f-1", "GET", "/slow?ms=1500", 200, H, b"slow\n")
J_TOMB = jpayload(2, LIVE, "big", "GET", "/bytes/2000000", 0)
J_FORGET = jpayload(3, 0, "f-2", "POST", "/echo")
J_OLD = jpayload(2, PAST, "old", "GET", "/", 204)
write("fuzz_journal", "records", b"\x00" + b"".join(jrec(p) for p in
                                                    (J_START, J_DONE, J_TOMB, J_FORGET, J_OLD)))
write("fuzz_journal", "start_only", b"\x00" + jrec(J_START) + jrec(jpayload(1, LIVE, "f-2", "POST", "/echo")))
write("fuzz_journal", "torn_tail", b"\x00" + jrec(J_START) + jrec(J_DONE)[:-5])
write("fuzz_journal", "huge_length", b"\x00" + jrec(J_START) + b"\xff\xff\xff\xff" + b"x" * 16)
write("fuzz_journal", "sealed", b"\x01" + b"".join(struct.pack(">H", len(p)) + p for p in
                                                   (J_START, J_DONE, J_TOMB, J_FORGET, J_OLD)))

# fuzz_admin_http input: byte 0 picks the feed size (1 + b % 64), then one connection's bytes
# (requests to the admin port, pipelined).
write("fuzz_admin_http", "pipelined", b"\x10GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
write("fuzz_admin_http", "post", b"\x03POST /api/houses HTTP/1.1\r\nAuthorization: Bearer tok\r\n"
      b"Content-Type: application/json\r\nContent-Length: 37\r\n\r\n"
      b'{"id":"farm-9","labels":{"site":"n"}}')
write("fuzz_admin_http", "chunked", b"\x07POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      b"3\r\nabc\r\n0\r\n\r\n")
write("fuzz_admin_http", "delete", b"\x01DELETE /api/houses/h1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
write("fuzz_admin_http", "upgrade", b"\x20GET http://h/x?y HTTP/1.1\r\nUpgrade: websocket\r\n"
      b"Connection: Upgrade\r\n\r\n")

# fuzz_registry input: byte 0 picks the parser (0 house hash, 1 state hash, 2 bridge stats,
# 3 recent list, 4 the L3 address book), then RESP as Redis would send it (HMGET labels created
# disabled tun_routes last_seen last_bridge of the house hash; HGETALL / LRANGE replies for the others; HMGET pool4
# pool6 h:<house>... of <p>:tun).
def resp(x):
    if isinstance(x, list):
        return b"*%d\r\n" % len(x) + b"".join(resp(e) for e in x)
    if isinstance(x, int):
        return b":%d\r\n" % x
    if x is None:
        return b"$-1\r\n"
    x = x.encode() if isinstance(x, str) else x
    return b"$%d\r\n%s\r\n" % (len(x), x)


write("fuzz_registry", "house", b"\x00" + resp(['{"site":"n\xc2\x9d"}', "1700000000000", "1",
                                                "10.1.2.0/24,fd00::/64", "1700000002000",
                                                "b1\x1b[2J"]))
write("fuzz_registry", "tun", b"\x04" + resp(["100.96.0.0/16", "fd7a:6770::/64", "7",
                                              "18446744073709551615", None]))
write("fuzz_registry", "state", b"\x01" + resp(["bridge", "b1", "transport", "rudp", "since",
                                                "1700000000000", "last_seen", "1700000001000",
                                                "rtt_ms", "203.4", "epoch", "7", "addr", "10.0.0.2",
                                                "req_total", "12", "err_total", "1", "bytes_in",
                                                "300", "bytes_out", "40", "loss_pct", "29.50"]))
write("fuzz_registry", "bstats", b"\x02" + resp(["id", "b1", "host", "vm\x1b[2J", "pid", "42",
                                                 "since_ms", "1", "ts_ms", "2", "houses", "3",
                                                 "redis_rtt_ms", "0.210"]))
write("fuzz_registry", "recent", b"\x03" + resp([
    '{"id":"f1","method":"GET","path":"/echo?x=1","status":200,"ms":3,"ts_ms":1700000000000}',
    '{"id":"f2","method":"POST","path":"/\\u001b[31m","status":502,"error":"upstream_unreachable"}',
    "not json", 5]))

# fuzz_api_body input: the body of POST /api/houses.
write("fuzz_api_body", "add", b'{"id":"farm-9","labels":{"site":"north","rack":"4"}}')
write("fuzz_api_body", "no_labels", b'{"id":"h1","labels":null}')
write("fuzz_api_body", "bad", b'{"id":"h\\u0000x","labels":{"a":1},"id":"dup"}')

# fuzz_hist input: byte 0's low bit picks RESP (0: an HGETALL reply of a history hash) or one
# raw value (1); bits 1-2 the range (1h, 6h, 24h). Now is minute 30 of hour 480000.
HOUR = "480000;0 10 1 500 600 60:10;10 3 0 1 2;30 2 2 0 0 16:1,17:1,239:1"
write("fuzz_hist", "value", b"\x01" + HOUR.encode())
write("fuzz_hist", "hgetall", b"\x04" + resp(["0", HOUR, "24", "479999;59 7 0 0 0 3:7", "1",
                                              "479976;5 1000 0 0 0", "2", "garbage"]))
write("fuzz_hist", "hostile", b"\x03" + b"480000;60 1 0 0 0;1 1 0 0;3 1 0 0 0 5:1,5:1;"
      b"4 1 0 0 0 240:1;5 1 0 0 0 4:4294967296;;10 9999999999999999999 0 0 0 7:1")

# fuzz_api_house input: byte 0's bits pick, reply by reply, the state hash (1) or the house
# hash (0: an array of odd length is the HMGET of <p>:tun instead); then RESP replies as
# HGETALL (HMGET) gives them.
write("fuzz_api_house", "both", b"\x02" + resp(["secret", "ab" * 32, "labels", '{"site":"n\\u00e9"}',
                                                 "created", "1700000000000", "disabled", "1",
                                                 "last_seen", "1700000002000", "last_bridge",
                                                 "b\"1\x1b"])
      + resp(["bridge", "b\"1\\", "transport", "rudp", "since", "1700000000000", "rtt_ms", "0.3",
              "loss_pct", "29.50", "req_total", "12", "bytes_in", "0x10", "epoch", "7"]))
write("fuzz_api_house", "tun", b"\x00" + resp(["secret", "ab" * 32, "tun_routes",
                                                "10.1.2.0/24,fd00::/64,x\"y"])
      + resp(["100.96.0.0/16", "fd7a:6770::/64", "7"]))
write("fuzz_api_house", "odd", b"\x01" + resp(["bridge", "\x1b[2J\xc3", "rtt_ms", "nan", "since",
                                                "1e400"]) + resp([1, 2, "x"]))

# fuzz_cli_esc input: byte 0 is the size of the cut buffer, then the text to escape.
write("fuzz_cli_esc", "osc", b"\x10" + b"\x1b]0;pwned\x07 a\r\nSet-Cookie: x=1")
write("fuzz_cli_esc", "c1", b"\x05" + b"\xc2\x9d0;t\xc2\x9c \x9b2J caf\xc3\xa9 \xf0\x9f\x98\x80")
write("fuzz_cli_esc", "invalid", b"\xff" + b"\xc0\x9d \xe0\x82\x9d \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82")

# fuzz_logjson input: byte 0 the room (64 + 16 * it) and how numbers are told (it % 3), byte 1
# which bytes a numeric conversion wrote (bit 7: any), then key=value text.
write("fuzz_logjson", "line", b"\x40\xff" + b'addr=10.0.0.1:443 house=farm-1 status=200 ms=12.5 '
      b'err="a \\"quoted\\" \\x1b[2J word" msg=No such file or directory n=-3')
write("fuzz_logjson", "hostile", b"\x05\x81" + b'k="\xff\xc0\x80 \xed\xa0\x80 \xe2\x80\xa8 \xc2\x9b '
      b'level=error\x00" event=x event=y ="= a="b""c" \\x zz=')
write("fuzz_logjson", "cut", b"\x00\x00" + b"a=" + b"\x01" * 300 + b" b=2")

# fuzz_stream input: 2 bytes of window, then ops (fuzz_stream.c): op 0 an entry of a byte key,
# op 1 an open entry, each as a field count, then name length (1 byte), name, value length
# (2 bytes, little-endian), value; op 2 data (offset mode, offset, length, shift, fin), op 3 an
# ack, op 4 consumed, op 5 sent, op 8 a clock tick.
def sfields(pairs):
    out = bytes([len(pairs)])
    for n, v in pairs:
        n = n.encode() if isinstance(n, str) else n
        v = v.encode() if isinstance(v, str) else v
        out += bytes([len(n)]) + n + struct.pack("<H", len(v)) + v
    return out

SW = b"\x00\x01"
write("fuzz_stream", "data_ack", SW + b"\x00" + sfields([("off", "0"), ("data", "hello"), ("ack", "0")])
      + b"\x04\x05\x00\x00" + b"\x0a\x01" + b"\x05\x10\x00\x00"
      + b"\x00" + sfields([("off", "0"), ("data", "hello world"), ("fin", "1")]))
write("fuzz_stream", "rst", SW + b"\x00" + sfields([("rst", "refused"), ("message", "no")]))
write("fuzz_stream", "win", SW + b"\x05\x00\x10\x00" + b"\x00" + sfields([("ack", "4096"), ("win", "65536")])
      + b"\x07" + b"\x03\x00\x00\x10" + b"\x00\x00\x00\x00")
write("fuzz_stream", "open", SW + b"\x01" + sfields([("kind", "stream"), ("id", "9b1e"), ("service", "ssh"),
                                                     ("window", "65536"), ("idle_ms", "60000"),
                                                     ("timeout_ms", "5000"), ("reply", "gp:rep:9b1e")]))
write("fuzz_stream", "events", SW + b"\x02\x00\x00\x00\x00\x01\x00" + b"\x02\x00\xf0\xff\x20\x00\x00\x01"
      + b"\x06\x01" + b"\x08\xff\xff" + b"\x02\x01" + b"\xff" * 8 + b"\x02\x00\x00")

# fuzz_wsframe input: one byte picking the chunk size, then what a bridge sends: an upgrade
# answer with frames after it, server frames of each length class, a fragmented message.
def wsf(op, payload, fin=True):
    n = len(payload)
    hdr = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        hdr += bytes([n])
    elif n < 65536:
        hdr += bytes([126]) + struct.pack(">H", n)
    else:
        hdr += bytes([127]) + struct.pack(">Q", n)
    return hdr + payload

write("fuzz_wsframe", "upgrade", b"\x03" + b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      b"Sec-WebSocket-Protocol: ghostport.v1\r\n\r\n" + wsf(2, b"\x01\x05frame"))
write("fuzz_wsframe", "frames", b"\x00" + wsf(2, b"x" * 125) + wsf(2, b"y" * 300) + wsf(9, b"ping")
      + wsf(2, b"z" * 70000) + wsf(8, b"\x03\xe8bye"))
write("fuzz_wsframe", "fragments", b"\x07" + wsf(1, b"he", False) + wsf(10, b"") + wsf(0, b"ll", False)
      + wsf(0, b"o"))
write("fuzz_wsframe", "url", b"\x01wss://[::1]:8443/gp?x=1")

# fuzz_ippkt input: a control byte (bit 0: the harness sets the IPv4 header checksum, bit 1:
# the IPv4 total or IPv6 payload length; bits 2-4 the MSS limit and MTU, 5-7 the answer's
# buffer), then an IP packet as a TUN device reads it (IFF_NO_PI). Built here with their
# checksums, so that they are accepted as they are (control bits 0 and 1 clear).
import ipaddress

def csum(b):
    b = b + b"\x00" * (len(b) % 2)
    s = sum(struct.unpack(">%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip4(proto, src, dst, l4, frag=0x4000, opts=b""):
    ihl = 20 + len(opts)
    h = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl // 4, 0, ihl + len(l4), 0x1234, frag, 64, proto,
                    0, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + opts
    return h[:10] + struct.pack(">H", csum(h)) + h[12:] + l4

def ip6(nh, src, dst, payload):
    return (struct.pack(">IHBB", 0x60000000, len(payload), nh, 64) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + payload)

def pseudo(v, src, dst, proto, n):
    if v == 4:
        return ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack(">BBH", 0, proto, n)
    return ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + struct.pack(">IxxxB", n, proto)

def l4sum(l4, at, ph):
    l4 = l4[:at] + b"\x00\x00" + l4[at + 2:]
    return l4[:at] + struct.pack(">H", csum(ph + l4)) + l4[at + 2:]

def tcp(v, src, dst, sport, dport, flags, opts=b"", data=b""):
    t = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, (20 + len(opts)) // 4 << 4, flags, 65535, 0, 0) + opts + data
    return l4sum(t, 16, pseudo(v, src, dst, 6, len(t)))

def udp(v, src, dst, sport, dport, data):
    u = struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data
    return l4sum(u, 6, pseudo(v, src, dst, 17, len(u)))

def icmp4(typ, code, data):
    return l4sum(struct.pack(">BBHI", typ, code, 0, 0x10001) + data, 2, b"")

def icmp6(src, dst, typ, code, data):
    m = struct.pack(">BBHI", typ, code, 0, 0x10001) + data
    return l4sum(m, 2, pseudo(6, src, dst, 58, len(m)))

MSS = bytes([2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 1, 1])
A4, B4, A6, B6 = "192.168.5.5", "10.1.2.3", "2001:db8::77", "fd00::5"
write("fuzz_ippkt", "v4_syn_mss", b"\x00" + ip4(6, A4, B4, tcp(4, A4, B4, 40000, 22, 0x02, MSS)))
write("fuzz_ippkt", "v4_syn_mss_odd", b"\x08" + ip4(6, A4, B4, tcp(4, A4, B4, 40000, 443, 0x12,
                                                                  bytes([1, 2, 4, 0xff, 0xff, 0, 0, 0]))))
write("fuzz_ippkt", "v4_big_df", b"\x10" + ip4(17, A4, B4, udp(4, A4, B4, 5000, 53, bytes(1452))))
write("fuzz_ippkt", "v4_options", b"\x03" + ip4(1, A4, B4, icmp4(8, 0, b"ping" * 100),
                                                 opts=bytes([148, 4, 0, 0, 1, 1, 1, 0])))
write("fuzz_ippkt", "v4_first_frag", b"\x00" + ip4(17, A4, B4, udp(4, A4, B4, 1, 2, bytes(992))[:504],
                                                    frag=0x2000))
write("fuzz_ippkt", "v4_later_frag", b"\x00" + ip4(6, A4, B4, bytes(64), frag=0x0040))
write("fuzz_ippkt", "v4_icmp_error", b"\x14" + ip4(1, A4, B4, icmp4(3, 1, bytes(600))))
write("fuzz_ippkt", "v6_syn_ext", b"\x04" + ip6(0, A6, B6, bytes([60, 0, 1, 4, 0, 0, 0, 0])
                                                  + bytes([6, 0, 1, 4, 0, 0, 0, 0])
                                                  + tcp(6, A6, B6, 1234, 8080, 0x02, MSS)))
write("fuzz_ippkt", "v6_big_udp", b"\xe8" + ip6(17, A6, B6, udp(6, A6, B6, 443, 5000, bytes(1452))))
write("fuzz_ippkt", "v6_frag_first", b"\x00" + ip6(44, A6, B6, bytes([17, 0, 0, 1, 0, 0, 0, 9])
                                                    + udp(6, A6, B6, 7, 5060, bytes(1992))[:1232]))
write("fuzz_ippkt", "v6_frag_later", b"\x00" + ip6(44, A6, B6, bytes([6, 0, 0x04, 0xd0, 0, 0, 0, 9])
                                                    + bytes(200)))
write("fuzz_ippkt", "v6_routing", b"\x00" + ip6(43, A6, B6, bytes([17, 2, 4, 0]) + bytes(20)
                                                 + udp(6, A6, B6, 1, 2, b"x")))
write("fuzz_ippkt", "v6_echo", b"\x1c" + ip6(58, A6, B6, icmp6(A6, B6, 128, 0, bytes(1400))))
write("fuzz_ippkt", "rule_v4", b"\x00udp:53@192.168.1.0/24")
write("fuzz_ippkt", "rule_v6", b"\x00tcp:8000-8100@fd00::/64")
write("fuzz_ippkt", "rules", b"\x00tcp:22, icmp ,any@10.0.0.0/8")
write("fuzz_ippkt", "pool_v6", b"\x00fd00:1::/64\x00" + bytes(range(8)))
write("fuzz_ippkt", "pool_v4", b"\x0010.8.0.0/31\x00\x01")
write("fuzz_ippkt", "mapped", b"\x00::ffff:10.0.0.1")

# fuzz_flowtab input: byte 0 sets the table (bits 0-3: capacity - 1, 4-6: the hash key, 7: the
# clock near its end), then records: a control byte (bits 0-1: 0 out, 1 in, 2 out and its
# mirror in, 3 out and an ICMP error quoting it in; bit 2 fix lengths and checksum; bit 3 a
# stale parse; bits 4-5 the error type or the sweep's budget; bit 6 a sweep; bit 7 half a
# quote), a time step (little-endian; bit 15: seconds) and a length (little-endian), then the
# packet. H4/H6: the house's TUN addresses; A4/B4, A6/B6 (above): hosts on the hub side.
H4, H6, R4, R6 = "10.7.0.2", "fd7a::2", "192.168.1.1", "fd00:1::1"

def rec(ctl, pkt, ms=0, secs=None):
    step = 0x8000 | secs if secs is not None else ms
    return struct.pack("<BHH", ctl, step, len(pkt)) + pkt

def echo4(src, dst, typ, ident):
    return ip4(1, src, dst, l4sum(struct.pack(">BBHHH", typ, 0, 0, ident, 1) + b"ping", 2, b""))

def echo6(src, dst, typ, ident):
    m = struct.pack(">BBHHH", typ, 0, 0, ident, 1) + b"ping"
    return ip6(58, src, dst, l4sum(m, 2, pseudo(6, src, dst, 58, len(m))))

def err4(src, dst, typ, code, quote):
    return ip4(1, src, dst, icmp4(typ, code, quote)[:4] + bytes(4) + quote)

def err6(src, dst, typ, code, quote):
    return ip6(58, src, dst, icmp6(src, dst, typ, code, b"")[:4] + bytes(4) + quote)

T4 = lambda sp, dp, fl, src=H4, dst=B4: ip4(6, src, dst, tcp(4, src, dst, sp, dp, fl))
T6 = lambda sp, dp, fl, src=H6, dst=B6: ip6(6, src, dst, tcp(6, src, dst, sp, dp, fl))
U4 = lambda sp, dp, src=H4, dst=B4: ip4(17, src, dst, udp(4, src, dst, sp, dp, b"query"))
U6 = lambda sp, dp, src=H6, dst=B6: ip6(17, src, dst, udp(6, src, dst, sp, dp, b"query"))
BIG4 = ip4(6, H4, B4, tcp(4, H4, B4, 40000, 443, 0x10, data=bytes(1400)))
BIG6 = ip6(6, H6, B6, tcp(6, H6, B6, 40000, 443, 0x10, data=bytes(1400)))

write("fuzz_flowtab", "tcp_v4", b"\x0f" + rec(0, T4(40000, 80, 0x02)) + rec(1, T4(80, 40000, 0x12, B4, H4), 20)
      + rec(0, T4(40000, 80, 0x10), 1) + rec(1, T4(80, 40000, 0x11, B4, H4), secs=100)
      + rec(0, T4(40000, 80, 0x11), 3) + rec(1, T4(80, 40000, 0x10, B4, H4), secs=29)
      + rec(0x40, b"", secs=2))
write("fuzz_flowtab", "tcp_v6_rst", b"\x03" + rec(0, T6(40000, 22, 0x02)) + rec(1, T6(22, 40000, 0x14, B6, H6), 5)
      + rec(0, T6(40000, 22, 0x02), 10) + rec(1, T6(22, 40000, 0x12, B6, H6), secs=59))
write("fuzz_flowtab", "mirror", b"\x07" + rec(2, T4(40001, 443, 0x02)) + rec(2, U4(5353, 53), 3)
      + rec(2, echo4(H4, B4, 8, 77), 3) + rec(2, T6(40001, 443, 0x02)) + rec(2, U6(5353, 53))
      + rec(2, echo6(H6, B6, 128, 78)) + rec(2, ip4(47, H4, B4, bytes(8))))
write("fuzz_flowtab", "udp_echo", b"\x0f" + rec(0, U4(5353, 53)) + rec(1, U4(53, 5353, B4, H4), 40)
      + rec(1, U4(53, 5354, B4, H4)) + rec(0, echo6(H6, B6, 128, 9)) + rec(1, echo6(B6, H6, 129, 9), 8)
      + rec(1, echo6(B6, H6, 129, 10)) + rec(1, U4(53, 5353, B4, H4), secs=179)
      + rec(1, echo6(B6, H6, 129, 9), secs=31))
write("fuzz_flowtab", "related", b"\x0f" + rec(3, BIG4) + rec(0x13, BIG6, 2) + rec(0xa3, U6(33434, 33435))
      + rec(0x23, echo4(H4, B4, 8, 5)) + rec(0, BIG4[:20] + BIG4[20:]) + rec(1, err4(R4, H4, 3, 4, BIG4[:576 - 28]), 1)
      + rec(1, err6(R6, H6, 2, 0, BIG6[:1232]), 1) + rec(1, err4(R4, H4, 11, 0, BIG4[:27]), 1)
      + rec(1, err4(R4, H4, 5, 1, BIG4[:28]), 1))
FRAG = udp(4, H4, B4, 5000, 7, bytes(992))
FRAG_IN = udp(4, B4, H4, 7, 5000, bytes(992))
write("fuzz_flowtab", "fragments", b"\x0f" + rec(0, ip4(17, H4, B4, FRAG[:504], frag=0x2000))
      + rec(0, ip4(17, H4, B4, FRAG[504:], frag=63)) + rec(1, ip4(17, B4, H4, FRAG_IN[:504], frag=0x2000), 5)
      + rec(1, ip4(17, B4, H4, FRAG_IN[504:], frag=63), 1)
      + rec(1, ip6(44, B6, H6, bytes([17, 0, 0x04, 0xd0, 0, 0, 0, 9]) + bytes(200)), 1))
write("fuzz_flowtab", "evict", b"\x01" + b"".join(rec(0x40 if k % 3 == 2 else 0, U4(10000 + k, 53), 7)
                                                   for k in range(6))
      + rec(1, U4(53, 10005, B4, H4)) + rec(1, U4(53, 10000, B4, H4)))
write("fuzz_flowtab", "stale", b"\x85" + rec(0, T4(1, 2, 0x02)) + rec(8, U6(3, 4)) + rec(9, T4(2, 1, 0x12, B4, H4))
      + rec(4, BIG4[:40]) + rec(0x4c, U4(9, 9), secs=0x7fff))
