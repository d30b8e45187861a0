/**
 * The least a Node boot agent can do in the VM under the registry's protocol (bench row
 * "7-least", bench/vm.ts): read the metadata from the MMDS (session token, document),
 * trade the bootstrap token for a session, download the bundle, check its sha256, gunzip
 * and write its regular files, start the workflow as the runtime user and report
 * runtime_started. Nothing else: no validation, no cache, no seal, no limits, no
 * heartbeats, no retries, no logging but its timing lines (the bench's breakdown). It measures where the floor of
 * #7 is, and it is never a boot agent: it trusts whatever it is given.
 *
 * Run by the bench in place of /opt/swarm/boot.sh, from the image's own /init (its second
 * stage: network, cache drive), with plain node.
 */
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const zlib = require('node:zlib');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const mark = (what) => process.stderr.write(`least-agent: ${what} (+${Math.round(performance.now())} ms)\n`);
mark('started');

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
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

async function main() {
  const mmds = 'http://169.254.169.254';
  const token = (
    await request(`${mmds}/latest/api/token`, { method: 'PUT', headers: { 'x-metadata-token-ttl-seconds': '60' } })
  ).toString();
  const doc = JSON.parse(await request(`${mmds}/`, { headers: { 'x-metadata-token': token, accept: 'application/json' } }));
  mark('metadata read');
  const { apiUrl, execution, bundle } = doc;
  const exchanged = JSON.parse(await post(`${apiUrl}/trpc/executions.exchangeToken`, execution.agentToken, { executionId: execution.id }));
  const session = exchanged.result.data.sessionToken;
  mark('exchanged');

  const archive = await request(bundle.url);
  if (crypto.createHash('sha256').update(archive).digest('hex') !== bundle.hash) throw new Error('hash mismatch');
  mark('fetched and verified');
  const tar = zlib.gunzipSync(archive);
  const dir = process.env.SWARM_WORKFLOW_DIR;
  fs.mkdirSync(dir, { recursive: true });
  for (let at = 0; at + 512 <= tar.length && tar[at] !== 0; ) {
    const field = (from, to) => tar.toString('utf8', at + from, at + to).replace(/\0.*$/s, '');
    const size = Number.parseInt(field(124, 136).trim() || '0', 8);
    const name = path.join(field(345, 500), field(0, 100));
    if (field(156, 157) === '0' || field(156, 157) === '') {
      fs.mkdirSync(path.join(dir, path.dirname(name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), tar.subarray(at + 512, at + 512 + size));
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  mark('unpacked');
  const command = doc.runtime?.command ?? JSON.parse(fs.readFileSync(path.join(dir, 'swarm.json'), 'utf8')).entrypoint;
  const child = spawn(command[0], command.slice(1), { cwd: dir, uid: 1000, gid: 1000, stdio: 'inherit', env: { PATH: process.env.PATH } });
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
