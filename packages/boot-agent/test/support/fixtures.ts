/**
 * Hostile fixtures for the boot agent, all generated at test time (no binary blobs): the
 * crafted archives of archives.ts, and tiny loopback HTTP servers that misbehave on purpose.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { sha256, sha256File } from './archives.js';
import { agentSandbox, type AgentSandbox } from './run-agent.js';

export * from './archives.js';

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
