/**
 * Hostile fixtures for the boot agent, all generated at test time (no binary blobs):
 * raw tar archives crafted header by header with node-tar's `Header` (so entries no honest
 * packer would write are possible), gzip bombs streamed to a temporary file, and tiny
 * loopback HTTP servers that misbehave on purpose.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { Header, Pax } from 'tar';
import { agentSandbox, type AgentSandbox } from './run-agent.js';

const BLOCK = 512;
const MTIME = new Date('2024-01-01T00:00:00Z');

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await fs.open(file)).createReadStream({ highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export type EntryType = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';

export type TarEntry = {
  path: string;
  type?: EntryType;
  mode?: number;
  body?: string | Buffer;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
  /** Size written in the header when it must differ from the body (a gzip bomb's announced size). */
  size?: number;
};

/** The header block(s) of one entry: a PAX extended header first when the path is too long for ustar. */
export function headerBlocks(e: TarEntry): Buffer {
  const type = e.type ?? 'File';
  const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
  const size = e.size ?? (type === 'File' ? body.length : 0);
  const data = {
    path: e.path,
    type,
    mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
    uid: 0,
    gid: 0,
    uname: 'root',
    gname: 'root',
    size,
    mtime: MTIME,
    linkpath: e.linkpath ?? '',
    devmaj: e.devmaj ?? 0,
    devmin: e.devmin ?? 0,
  };
  const header = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(e.path) <= 100) {
    if (!new Header(data).encode(header)) return header;
  }
  // Too long for ustar: the path goes in a PAX extended header, the ustar header gets a stand-in
  // (as GNU tar and node-tar write it). Encoding the long path into ustar is also quadratic in node-tar.
  new Header({ ...data, path: e.path.slice(-99).replace(/^\/+/, '') || 'long' }).encode(header);
  return Buffer.concat([new Pax({ path: e.path, mtime: MTIME }).encode(), header]);
}

const padding = (n: number) => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** One entry as raw tar bytes: header(s), body, zero padding to the block size. */
export function entryBytes(e: TarEntry): Buffer {
  const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
  return Buffer.concat([headerBlocks(e), body, padding(body.length)]);
}

/** End of archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export function tarBytes(entries: TarEntry[]): Buffer {
  return Buffer.concat([...entries.map(entryBytes), END_OF_ARCHIVE]);
}

export const gzip = (data: Buffer) => zlib.gzipSync(data);

export type Blob = { bytes: Buffer; hash: string };
export const blob = (bytes: Buffer): Blob => ({ bytes, hash: sha256(bytes) });

/** A gzip'd tar of `entries`, with its sha256. */
export const bundle = (entries: TarEntry[]): Blob => blob(gzip(tarBytes(entries)));

/** A manifest whose entrypoint prints a marker and exits with `code`: if it ever runs, the output shows it. */
export const manifest = (code = 0, marker = 'WORKFLOW-RAN'): TarEntry => ({
  path: 'swarm.json',
  body: JSON.stringify({ entrypoint: ['sh', '-c', `echo ${marker}; exit ${code}`] }),
});

/** `count` empty files (header blocks only, 1,000 to a directory), gzip'd at level 1: ~100 MB of tar in about a second. */
export function manyEntriesBundle(count: number): Blob {
  const parts: Buffer[] = [entryBytes(manifest())];
  for (let i = 0; i < count; i++) {
    const dir = `d${Math.floor(i / 1000)}`;
    if (i % 1000 === 0) parts.push(headerBlocks({ path: `${dir}/`, type: 'Directory' }));
    parts.push(headerBlocks({ path: `${dir}/f${i}` }));
  }
  parts.push(END_OF_ARCHIVE);
  return blob(zlib.gzipSync(Buffer.concat(parts), { level: 1 }));
}

/**
 * A gzip bomb written to `file`: one tar entry announcing `size` bytes of zeros, streamed
 * through zlib (never held in memory). 1 GiB of zeros gzips to about 1 MiB.
 */
export async function gzipBombFile(file: string, size = 1024 ** 3): Promise<Blob & { file: string }> {
  const chunk = Buffer.alloc(1024 * 1024);
  async function* tar() {
    yield entryBytes(manifest());
    yield headerBlocks({ path: 'zeros.bin', size });
    for (let left = size; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    yield padding(size);
    yield END_OF_ARCHIVE;
  }
  await pipeline(Readable.from(tar()), zlib.createGzip({ level: 6 }), createWriteStream(file));
  const bytes = await fs.readFile(file);
  return { file, bytes, hash: sha256(bytes) };
}

/** `bytes` of deterministic, incompressible noise (a sha512 chain). */
export function noise(bytes = 256 * 1024): Buffer {
  const parts: Buffer[] = [];
  let seed = Buffer.from('swarm');
  for (let made = 0; made < bytes; made += seed.length) {
    seed = createHash('sha512').update(seed).digest();
    parts.push(seed);
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** A valid bundle holding `data/noise.bin` (incompressible, so a download can be cut in the middle). */
export const bigBundle = (code = 0, bytes = 256 * 1024): Blob => bundle([manifest(code), { path: 'data/noise.bin', body: noise(bytes) }]);

// ---------------------------------------------------------------------------------------
// Loopback HTTP servers

export type SeenRequest = { method: string; url: string; headers: http.IncomingHttpHeaders; at: number };

export type TestServer = {
  /** `http://host:port/<name>` */
  url(name?: string): string;
  host: string;
  port: number;
  requests: SeenRequest[];
  close(): Promise<void>;
};

/** Starts a server on a loopback address (port 0); `handler` gets the request number (1-based). */
export async function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void | Promise<void>,
  host = '127.0.0.1',
): Promise<TestServer> {
  if (!host.startsWith('127.')) throw new Error('test servers listen on loopback only');
  const requests: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, at: Date.now() });
    Promise.resolve(handler(req, res, requests.length)).catch((err: Error) => {
      res.destroy(err);
    });
  });
  await new Promise<void>((ok, bad) => {
    server.once('error', bad);
    server.listen(0, host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    host,
    port,
    requests,
    url: (name = 'bundle.tar.gz') => `http://${host}:${port}/${name}`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/** Serves `bytes` with 200, or 206 for a `Range: bytes=N-` request. */
export function sendBundle(req: http.IncomingMessage, res: http.ServerResponse, bytes: Buffer): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  if (range && start < bytes.length) {
    res.writeHead(206, {
      'content-type': 'application/gzip',
      'content-length': bytes.length - start,
      'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
    });
    res.end(bytes.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': bytes.length });
  res.end(bytes);
}

/** A server that serves one bundle correctly. */
export const serveBundle = (bytes: Buffer, host?: string) => serve((req, res) => sendBundle(req, res, bytes), host);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// Sandboxes and what they leave behind

export type Sandbox = AgentSandbox & {
  /** The agent's run with bundle flags. */
  fetch(url: string, hash: string, extra?: string[], env?: Record<string, string>, timeoutMs?: number): ReturnType<AgentSandbox['run']>;
};

/**
 * An agent sandbox with an empty metadata file: the helper points SWARM_METADATA_FILE into
 * the sandbox (so the host's /run/swarm/metadata.json is never read), and an explicitly
 * named metadata file must exist.
 */
export async function sandbox(): Promise<Sandbox> {
  const sb = await agentSandbox();
  await fs.writeFile(path.join(sb.dir, 'metadata.json'), '{}\n');
  return Object.assign(sb, {
    fetch: (url: string, hash: string, extra: string[] = [], env: Record<string, string> = {}, timeoutMs?: number) =>
      sb.run(['--bundle-url', url, '--bundle-hash', hash, ...extra], env, timeoutMs),
  });
}

/** A previous, good workflow tree in the sandbox's workflow directory; a failed run must leave it as it is. */
export async function plantPreviousWorkflow(sb: AgentSandbox): Promise<void> {
  await fs.mkdir(path.join(sb.workflowDir, 'lib'), { recursive: true });
  await fs.writeFile(path.join(sb.workflowDir, 'swarm.json'), JSON.stringify({ entrypoint: ['sh', '-c', 'echo previous'] }));
  await fs.writeFile(path.join(sb.workflowDir, 'lib', 'previous.js'), 'console.log("previous version");\n', { mode: 0o644 });
}

/** Path → mode and content hash of every entry under `dir` (empty if missing). */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const d of await fs.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      const abs = path.join(dir, r);
      const st = await fs.lstat(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (d.isDirectory()) {
        out[`${r}/`] = mode;
        await walk(r);
      } else if (d.isFile()) out[r] = `${mode} ${sha256(await fs.readFile(abs))}`;
      else out[r] = `${mode} special`;
    }
  };
  await walk('');
  return out;
}

/**
 * Every problem with what a run left in the sandbox: anything outside the cache and
 * workflow directories (and the metadata file the test wrote), temporary leftovers, and
 * cache entries that are not named after their own sha256 or were not expected. A cached
 * bundle may have an unpacked tree beside it (`<hash>.tree/`), never without its archive.
 */
export async function leftoverProblems(sb: AgentSandbox, opts: { cached: string[]; alsoAllowed?: string[] }): Promise<string[]> {
  const problems: string[] = [];
  const tree = await sb.tree();
  const roots = ['cache/', 'workflow/', ...(opts.alsoAllowed ?? [])];
  for (const p of tree) {
    if (p === 'metadata.json' || roots.some((r) => p === r || p.startsWith(r))) continue;
    problems.push(`outside the cache and workflow directories: ${p}`);
  }
  for (const p of tree) if (/\.partial-|\.staging-|\.trash-|\.old$|\.old\//.test(p)) problems.push(`temporary leftover: ${p}`);
  const cacheNames = tree
    .filter((p) => p.startsWith('cache/') && p !== 'cache/' && !/^cache\/[^/]+\/./.test(p))
    .map((p) => p.slice('cache/'.length));
  for (const name of cacheNames) {
    const t = /^([0-9a-f]{64})\.tree\/$/.exec(name);
    if (t) {
      if (!opts.cached.includes(t[1]!)) problems.push(`cache holds a tree it should not: ${name}`);
      continue;
    }
    const m = /^([0-9a-f]{64})\.tar\.gz$/.exec(name);
    if (!m) {
      problems.push(`unexpected cache entry: ${name}`);
      continue;
    }
    if (!opts.cached.includes(m[1]!)) problems.push(`cache holds a bundle it should not: ${name}`);
    const actual = await sha256File(path.join(sb.cacheDir, name));
    if (actual !== m[1]) problems.push(`cache file ${name} holds bytes hashing to ${actual}`);
  }
  for (const hash of opts.cached) if (!cacheNames.includes(`${hash}.tar.gz`)) problems.push(`cache lacks ${hash}`);
  return problems;
}

/** The last line the agent wrote to stderr (its failure message). */
export const lastLine = (stderr: string) => stderr.trimEnd().split('\n').at(-1) ?? '';
