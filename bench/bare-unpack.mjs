/**
 * The floor of #4a on the boot agent's design (bench/boot-agent.ts runs it as it runs the
 * agent, with the same node flags): one Node process doing only what a cold boot cannot
 * skip, with the agent's own libraries and threads — Node's http GET, the sha256 of the
 * bytes as they arrive, node-tar's Parser (which gunzips through minizlib on this thread,
 * as the agent's walk does) and every file written with open/write/close — and nothing
 * else: no cache copy of the archive, no fsync, no entry rules, no staging directory, no
 * tree for the warm path.
 *
 * Usage: node bench/bare-unpack.mjs <url> <sha256> <directory>
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';

// node-tar as the agent has it (a dependency of the SDK's bundle rules, not of the workspace root).
const { Parser } = await import(createRequire(new URL('../packages/sdk/package.json', import.meta.url)).resolve('tar/parse'));

const [url, hash, dir] = process.argv.slice(2);
const sha = createHash('sha256');
const parser = new Parser({ strict: true });
const made = new Set();
const makeDir = (d) => {
  if (made.has(d)) return;
  fs.mkdirSync(d, { recursive: true });
  made.add(d);
};
parser.on('entry', (entry) => {
  const file = path.join(dir, entry.path);
  if (entry.type === 'Directory') {
    makeDir(file);
    entry.resume();
    return;
  }
  makeDir(path.dirname(file));
  const fd = fs.openSync(file, 'wx', entry.mode & 0o111 ? 0o755 : 0o644);
  entry.on('data', (chunk) => fs.writeSync(fd, chunk));
  entry.on('end', () => fs.closeSync(fd));
});
const unpacked = new Promise((resolve, reject) => {
  parser.on('end', resolve);
  parser.on('error', reject);
});
http.get(url, (res) => {
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
  res.on('data', (chunk) => {
    sha.update(chunk);
    parser.write(chunk);
  });
  res.on('end', () => parser.end());
});
await unpacked;
if (sha.digest('hex') !== hash) throw new Error('sha256 mismatch');
