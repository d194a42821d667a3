// A house's web app, for the front door's browser test (tests/web/app.test.js, run by
// tests/integration/web.c): Node's built-in modules only, the WebSocket handshake and frames by
// hand (as tests/integration/front.c's echo server).
//
//   node tests/web/app_server.js PORT
//
// Listens on 127.0.0.1:PORT and prints "app_server: listening on 127.0.0.1:PORT". Serves
//   GET / and /index.html  the page below (inline script, relative URLs only: it is served
//                          under /h/<house>/ by the front door, so ./api/hello and ./ws)
//   GET /api/hello         {"text": API_TEXT, "path", "xff"}: the path and X-Forwarded-For it saw
//   Upgrade: websocket     any path: each text message comes back as {"echo": text}, and
//                          {"live": n} (n = 1, 2, ...) is pushed every 100 ms until the close
//   anything else          404
// It logs one line per request ("GET /api/hello xff=..."; "upgrade /ws ..."; "ws closed ...")
// so that the caller can see what reached it.
'use strict';

const http = require('http');
const crypto = require('crypto');

const API_TEXT = 'Hello from the house\'s web app'; // tests/web/app.test.js waits for it
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node app_server.js PORT');
  process.exit(2);
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>House web app</title>
<link rel="icon" href="data:,">
<style>body { font: 16px sans-serif; margin: 2em; } dt { font-weight: bold; }</style>
</head>
<body>
<h1>House web app</h1>
<dl>
<dt>API</dt><dd id="api">loading…</dd>
<dt>Echo</dt><dd id="echo">waiting…</dd>
<dt>Live</dt><dd id="live">0</dd>
<dt>Socket</dt><dd id="state">connecting</dd>
<dt>Socket URL</dt><dd id="wsurl"></dd>
</dl>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
// Relative to the page: under /h/<house>/ these stay under it.
fetch('./api/hello').then((r) => {
  if (!r.ok) throw new Error('HTTP ' + r.status);
  return r.json();
}).then((j) => { $('api').textContent = j.text; },
  (e) => { $('api').textContent = 'error: ' + e.message; });

const u = new URL('ws', location.href);
u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
$('wsurl').textContent = u.href;
const ws = new WebSocket(u.href);
ws.onopen = () => { $('state').textContent = 'open'; ws.send('hello'); };
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if ('echo' in m) $('echo').textContent = m.echo;
  if ('live' in m) $('live').textContent = String(m.live);
};
ws.onerror = () => { $('state').textContent = 'error'; };
ws.onclose = (ev) => { $('state').textContent = 'closed ' + ev.code; };
window.app = { close: () => ws.close(1000, 'bye') };
</script>
</body>
</html>
`;

const log = (msg) => console.log('app_server: ' + msg);

const srv = http.createServer((req, res) => {
  const xff = req.headers['x-forwarded-for'] || '-';
  log(`${req.method} ${req.url} xff=${xff}`);
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && (path === '/' || path === '/index.html')) {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(PAGE);
  } else if (req.method === 'GET' && path === '/api/hello') {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({ text: API_TEXT, path: req.url, xff }));
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
});

// One server frame (FIN, unmasked) with opcode op and payload p.
function frame(op, p) {
  let h;
  if (p.length < 126) {
    h = Buffer.from([0x80 | op, p.length]);
  } else if (p.length < 65536) {
    h = Buffer.alloc(4);
    h[0] = 0x80 | op;
    h[1] = 126;
    h.writeUInt16BE(p.length, 2);
  } else {
    h = Buffer.alloc(10);
    h[0] = 0x80 | op;
    h[1] = 127;
    h.writeBigUInt64BE(BigInt(p.length), 2);
  }
  return Buffer.concat([h, p]);
}

srv.on('upgrade', (req, sock, head) => {
  const key = req.headers['sec-websocket-key'];
  log(`upgrade ${req.url} origin=${req.headers.origin || '-'} ` +
    `xff=${req.headers['x-forwarded-for'] || '-'}`);
  sock.on('error', () => {});
  if (!key || (req.headers.upgrade || '').toLowerCase() !== 'websocket') {
    sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Accept: ' + accept + '\r\n\r\n');

  let open = true;
  let n = 0;
  const send = (obj) => { if (open) sock.write(frame(1, Buffer.from(JSON.stringify(obj)))); };
  const live = setInterval(() => send({ live: ++n }), 100);
  const finish = (why) => {
    if (!open) return;
    open = false;
    clearInterval(live);
    log(`ws closed (${why}) after live=${n}`);
  };

  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
  let text = []; // a fragmented text message's parts
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const fin = buf[0] & 0x80, op = buf[0] & 15, masked = buf[1] & 128;
      let len = buf[1] & 127, o = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        o = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        o = 10;
      }
      const mo = o;
      if (masked) o += 4;
      if (buf.length < o + len) return;
      const p = Buffer.from(buf.subarray(o, o + len));
      if (masked) for (let i = 0; i < len; i++) p[i] ^= buf[mo + (i & 3)];
      buf = buf.subarray(o + len);
      if (op === 8) { // close: answer it, then end our side
        const code = p.length >= 2 ? p.readUInt16BE(0) : 1005;
        if (open) sock.write(frame(8, p.subarray(0, 2)));
        finish(`close ${code}`);
        sock.end();
        return;
      }
      if (op === 9) { if (open) sock.write(frame(10, p)); continue; }
      if (op === 1 || (op === 0 && text.length)) {
        text.push(p);
        if (!fin) continue;
        const msg = Buffer.concat(text).toString('utf8');
        text = [];
        log(`ws message ${JSON.stringify(msg)}`);
        send({ echo: msg });
      }
    }
  });
  sock.on('end', () => { finish('end'); sock.end(); });
  sock.on('close', () => finish('socket closed'));
});

srv.listen(port, '127.0.0.1', () => log(`listening on 127.0.0.1:${port}`));
