// Ghost Port producer in Node (npm package "redis" v4): send one request, print the reply.
const { createClient, commandOptions } = require('redis');
const { randomUUID } = require('crypto');

async function main() {
  // GP_REDIS: redis://[user:password@]host:port/db, or rediss://... for TLS (GP_REDIS_CA_FILE:
  // its CA); REDISCLI_AUTH: the password, if it is not in the URL.
  const url = process.env.GP_REDIS || 'redis://127.0.0.1:6379/0';
  const opts = { url };
  if (process.env.REDISCLI_AUTH) opts.password = process.env.REDISCLI_AUTH;
  if (url.startsWith('rediss://') && process.env.GP_REDIS_CA_FILE)
    opts.socket = { tls: true, ca: require('fs').readFileSync(process.env.GP_REDIS_CA_FILE) };
  const client = createClient(opts);
  await client.connect();
  const house = process.env.GP_HOUSE || 'demo';
  const id = randomUUID();
  const replyKey = `gp:rep:${id}`;

  await client.xAdd(`gp:{${house}}:req`, '*', {
    id,
    method: 'GET',
    path: '/echo?from=node',
    headers: JSON.stringify({ accept: 'application/json' }),
    body: '',
    timeout_ms: '5000',
    reply: replyKey,
  }, { TRIM: { strategy: 'MAXLEN', strategyModifier: '~', threshold: 10000 } });

  // Read reply entries until final=1 (buffers keep binary bodies intact).
  let last = '0-0', status, headers, error, message;
  const chunks = [];
  const deadline = Date.now() + 5000 + 2000;
  while (Date.now() < deadline) {
    const res = await client.xRead(commandOptions({ returnBuffers: true }),
      { key: replyKey, id: last }, { BLOCK: 1000 });
    for (const { id: entryId, message: f } of res ? res[0].messages : []) {
      last = entryId.toString();
      if (status === undefined) {
        status = Number(f.status.toString());
        headers = JSON.parse(f.headers ? f.headers.toString() : '{}'); // names are lower-case
        error = f.error && f.error.toString();
        message = f.message && f.message.toString();
      }
      if (f.body) chunks.push(f.body);
      if (f.final && f.final.toString() === '1') {
        await client.del(replyKey);
        await client.quit();
        if (error) {
          console.error(`error ${status} ${error}: ${message}`);
          process.exit(1);
        }
        console.log(status, headers['content-type']);
        console.log(Buffer.concat(chunks).toString());
        process.exit(status < 400 ? 0 : 1);
      }
    }
  }
  console.error('no reply before the deadline');
  process.exit(3);
}

main().catch((e) => { console.error(e); process.exit(2); });
