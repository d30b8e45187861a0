/**
 * The least a Node boot agent can do in the VM under the registry's protocol (bench rows
 * "7-least" and "7c-least", bench/vm.ts): read the metadata from the MMDS (session token,
 * document), trade the bootstrap token for a session, download the bundle, check its
 * sha256, gunzip it and write its regular files, start the workflow as the runtime user and
 * report runtime_started. The exchange runs alongside the download and unpack (only the
 * event needs the session); one kept-open connection per service; the modules of the later
 * steps load while the first request waits for its answer. Nothing else: no
 * validation, cache, seal, limits, retries or other events, and no logging but its timing
 * lines (the bench's breakdown). It estimates where #7's floor is and is never a boot
 * agent: it trusts whatever it is given.
 *
 * Run by the bench in place of /opt/swarm/boot.sh, from the image's own /init (its second
 * stage: network, cache drive).
 */
'use strict';
// The first line before anything is loaded: the bench times the work from here.
process.stderr.write(`least-agent: started (+${Math.round(performance.now())} ms)\n`);
const mark = (what) => process.stderr.write(`least-agent: ${what} (+${Math.round(performance.now())} ms)\n`);

const http = require('node:http');

// One socket per service (MMDS, registry, store), kept open between its requests.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** The answer's body; anything but 200 is an error with the answer's text. */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const answer = Buffer.concat(chunks);
        if (res.statusCode === 200) resolve(answer);
        else reject(new Error(`${method} ${url}: HTTP ${res.statusCode}: ${answer.toString().slice(0, 300)}`));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
const post = (url, token, value) =>
  request(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(value),
  });

/** Downloads, checks and writes the bundle into `dir` (the bench's bundle: a ustar archive of regular files). */
async function unpack(bundle, dir) {
  const archive = await request(bundle.url);
  if (require('node:crypto').createHash('sha256').update(archive).digest('hex') !== bundle.hash) throw new Error('hash mismatch');
  mark('fetched and verified');
  const tar = require('node:zlib').gunzipSync(archive);
  const fs = require('node:fs');
  const path = require('node:path');
  fs.mkdirSync(dir, { recursive: true });
  for (let at = 0; at + 512 <= tar.length && tar[at] !== 0; ) {
    const field = (from, to) => tar.toString('utf8', at + from, at + to).replace(/\0.*$/s, '');
    if (field(257, 262) !== 'ustar') throw new Error(`not a ustar header at ${at}`);
    const size = Number.parseInt(field(124, 136).trim() || '0', 8);
    const name = path.join(field(345, 500), field(0, 100));
    const type = field(156, 157);
    if (type === '0' || type === '') {
      fs.mkdirSync(path.join(dir, path.dirname(name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), tar.subarray(at + 512, at + 512 + size));
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  mark('unpacked');
  return JSON.parse(fs.readFileSync(path.join(dir, 'swarm.json'), 'utf8')).entrypoint;
}

async function main() {
  const mmds = 'http://169.254.169.254';
  const asked = request(`${mmds}/latest/api/token`, { method: 'PUT', headers: { 'x-metadata-token-ttl-seconds': '60' } });
  // The modules of the later steps, loaded while the first answer is on its way.
  setImmediate(() => {
    for (const m of ['node:crypto', 'node:zlib', 'node:fs', 'node:path', 'node:child_process']) require(m);
  });
  const token = (await asked).toString();
  const doc = JSON.parse(await request(`${mmds}/`, { headers: { 'x-metadata-token': token, accept: 'application/json' } }));
  mark('metadata read');
  const { apiUrl, execution, bundle } = doc;
  const dir = process.env.SWARM_WORKFLOW_DIR;
  const [exchanged, entrypoint] = await Promise.all([
    post(`${apiUrl}/trpc/executions.exchangeToken`, execution.agentToken, { executionId: execution.id }),
    unpack(bundle, dir),
  ]);
  const session = JSON.parse(exchanged).result.data.sessionToken;
  const command = doc.runtime?.command ?? entrypoint;
  const child = require('node:child_process').spawn(command[0], command.slice(1), {
    cwd: dir,
    uid: 1000,
    gid: 1000,
    stdio: 'inherit',
    env: { PATH: process.env.PATH },
  });
  await new Promise((resolve, reject) => child.on('spawn', resolve).on('error', reject));
  const event = (seq, type, data) => ({ executionId: execution.id, seq, type, data, at: new Date().toISOString() });
  await post(`${apiUrl}/trpc/executions.appendEvent`, session, event(0, 'runtime_started', { pid: child.pid }));
  mark('runtime_started reported');
  const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  await post(`${apiUrl}/trpc/executions.appendEvent`, session, event(1, 'runtime_exited', { code }));
  return code;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`least-agent: ${err.stack}\n`);
    process.exit(70);
  },
);
