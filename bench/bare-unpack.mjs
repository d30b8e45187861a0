/**
 * The floors of #4a on the boot agent's design (bench/boot-agent.ts runs them as it runs the
 * agent, with the same node flags): one Node process doing only what a cold boot cannot
 * skip, with the agent's own libraries and threads — Node's http GET, the sha256 of the
 * bytes as they arrive, node:zlib's gunzip on the thread pool ahead of node-tar's Parser
 * (as the agent's walk does, @swarm/sdk/bundle-rules) and every file written with
 * open/write/close — and nothing else: no entry rules, no staging directory, no events.
 *
 * With --keep <directory>: also what a cold boot must leave in the cache for #5's warm boot,
 * kept as the agent keeps it: the archive written there as it downloads (on the thread
 * pool), and every file hard-linked into <directory>/tree once unpacked.
 * With --inline-gunzip: node-tar gunzips on the main thread instead (minizlib, as the agent
 * did until 2026-11-30), so the bench shows the floor of both designs side by side.
 *
 * Usage: node bench/bare-unpack.mjs <url> <sha256> <directory> [--keep <directory>] [--inline-gunzip]
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import zlib from 'node:zlib';

// node-tar as the agent has it (a dependency of the SDK's bundle rules, not of the workspace root).
const { Parser } = await import(createRequire(new URL('../packages/sdk/package.json', import.meta.url)).resolve('tar/parse'));

const [url, hash, dir, ...flags] = process.argv.slice(2);
const keep = flags.includes('--keep') ? flags[flags.indexOf('--keep') + 1] : undefined;
const inline = flags.includes('--inline-gunzip');
const sha = createHash('sha256');
const parser = inline ? new Parser({ strict: true }) : new Parser({ strict: true, zstd: false, brotli: false });
const made = new Set();
const files = [];
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
  files.push(entry.path);
  const fd = fs.openSync(file, 'wx', entry.mode & 0o111 ? 0o755 : 0o644);
  entry.on('data', (chunk) => fs.writeSync(fd, chunk));
  entry.on('end', () => fs.closeSync(fd));
});
const unpacked = new Promise((resolve, reject) => {
  parser.on('end', resolve);
  parser.on('error', reject);
});
// As the walk: 256 KiB inflated a round trip, each handled in a microtask, after zlib sent the pool the next.
const gunzip = zlib.createGunzip({ chunkSize: 256 * 1024, writableHighWaterMark: 256 * 1024 });
gunzip.on('data', (chunk) => queueMicrotask(() => parser.write(chunk)));
gunzip.on('end', () => queueMicrotask(() => parser.end()));
gunzip.on('error', (err) => {
  throw err;
});
const archive = keep && fs.createWriteStream(path.join(keep, 'bundle.tar.gz'));
const archived = archive && new Promise((resolve, reject) => archive.on('finish', resolve).on('error', reject));
http.get(url, (res) => {
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
  res.on('data', (chunk) => {
    sha.update(chunk);
    if (inline) {
      parser.write(chunk);
      if (archive && !archive.write(chunk)) {
        res.pause();
        archive.once('drain', () => res.resume());
      }
      return;
    }
    // Held while the gunzip or the archive's file is behind, as the agent's download is.
    const behind = [gunzip.write(chunk) ? undefined : gunzip, archive && !archive.write(chunk) ? archive : undefined].filter(Boolean);
    if (behind.length === 0) return;
    res.pause();
    Promise.all(behind.map((s) => new Promise((resolve) => s.once('drain', resolve)))).then(() => res.resume());
  });
  res.on('end', () => {
    archive?.end();
    if (inline) parser.end();
    else gunzip.end();
  });
});
await unpacked;
await archived;
if (sha.digest('hex') !== hash) throw new Error('sha256 mismatch');
if (keep) {
  const tree = path.join(keep, 'tree');
  for (const d of [...made].map((d) => path.relative(dir, d)).sort()) fs.mkdirSync(path.join(tree, d), { recursive: true });
  for (const f of files) fs.linkSync(path.join(dir, f), path.join(tree, f));
}
