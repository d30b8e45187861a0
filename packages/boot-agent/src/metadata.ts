/**
 * Where the metadata document comes from, highest precedence first: command-line flags,
 * environment, the Firecracker MMDS (V2 session tokens), a JSON file. Each source fills
 * what the ones above it left out; the result is validated against the SDK's schema.
 */
import fs from 'node:fs/promises';
import { smallRequest } from './http.js';
import { clientFor } from './transport.js';
import { type VmMetadata, signingMaterial, vmMetadata } from '@swarm/sdk/metadata';
import { AgentError } from './errors.js';

export type Partial = {
  bundle?: { url?: unknown; hash?: unknown; size?: unknown; treeDigest?: unknown };
  workflow?: unknown;
  execution?: { id?: unknown; agentToken?: unknown };
  apiUrl?: unknown;
  runtime?: { command?: unknown };
  secrets?: unknown;
};

const bad = (message: string) => new AgentError('bad_metadata', message);
const MMDS_TIMEOUT_MS = 1500;

/** Flags and environment share names: --bundle-url and BUNDLE_URL, and so on. */
export function fromVariables(v: Record<string, string | undefined>, runtime: string[] | undefined): Partial {
  const size = v.BUNDLE_SIZE === undefined ? undefined : /^\d+$/.test(v.BUNDLE_SIZE) ? Number(v.BUNDLE_SIZE) : v.BUNDLE_SIZE;
  let command: unknown = runtime?.length ? runtime : undefined;
  if (command === undefined && v.SWARM_RUNTIME_CMD !== undefined) {
    try {
      command = JSON.parse(v.SWARM_RUNTIME_CMD);
    } catch {
      throw bad('SWARM_RUNTIME_CMD: must be a JSON array of strings, e.g. ["node","index.js"]');
    }
  }
  return (
    prune({
      bundle: prune({ url: v.BUNDLE_URL, hash: v.BUNDLE_HASH, size, treeDigest: v.BUNDLE_TREE_DIGEST }),
      workflow: v.SWARM_WORKFLOW,
      execution: prune({ id: v.SWARM_EXECUTION_ID, agentToken: v.SWARM_AGENT_TOKEN }),
      apiUrl: v.SWARM_API_URL,
      runtime: command === undefined ? undefined : { command },
    }) ?? {}
  );
}

/**
 * Reads the MMDS document: PUT a session token, then GET the root as JSON with it, both on
 * one kept-open connection (each new connection through QEMU's forward starts a process on
 * the host, and under TCG costs the guest ~25 ms more than a request on an open one).
 */
export async function fromMmds(base: string): Promise<Partial | null> {
  // The PUT is the agent's first request, on a new socket: never sent twice (http.ts).
  const agent = new (clientFor(base.startsWith('https:') ? 'https:' : 'http:').Agent)({ keepAlive: true, maxSockets: 1 });
  try {
    const opts = { timeoutMs: MMDS_TIMEOUT_MS * 2, agent };
    let token: string;
    try {
      const res = await smallRequest(`${base}/latest/api/token`, {
        ...opts,
        method: 'PUT',
        headers: { 'x-metadata-token-ttl-seconds': '300' },
      });
      token = res.text.trim();
      if (res.statusCode !== 200 || !token) return null;
    } catch {
      return null; // no metadata service here: not an error, other sources may suffice
    }
    const res = await smallRequest(`${base}/`, { ...opts, headers: { 'x-metadata-token': token, accept: 'application/json' } }).catch(
      (err: Error) => {
        throw bad(`the metadata service at ${base} failed: ${err.message}`);
      },
    );
    const text = res.text;
    if (res.statusCode !== 200) throw bad(`the metadata service at ${base} answered HTTP ${res.statusCode}`);
    return parseJson(text, `metadata from ${base}`);
  } finally {
    agent.destroy();
  }
}

export async function fromFile(file: string, required: boolean): Promise<Partial | null> {
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' && !required) return null;
    throw bad(`cannot read metadata file ${file}: ${err.code ?? err.message}`);
  });
  return text === null ? null : parseJson(text, `metadata file ${file}`);
}

function parseJson(text: string, what: string): Partial {
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Partial;
  } catch (err) {
    throw bad(`${what} is not a JSON object (${(err as Error).message})`);
  }
}

/** Merges sources (highest precedence first) and validates the result. */
export function resolveMetadata(sources: Array<Partial | null>): VmMetadata {
  const merged: Partial = {};
  for (const s of [...sources].reverse()) {
    if (!s) continue;
    for (const [k, v] of Object.entries(s)) {
      const key = k as keyof Partial;
      const prev = merged[key];
      merged[key] = (isPlainObject(prev) && isPlainObject(v) && key !== 'secrets' ? { ...prev, ...v } : v) as never;
    }
  }
  const parsed = vmMetadata.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw bad(`metadata ${issue.path.join('.') || '(document)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** A bundle reference from elsewhere (the registry's answer to a resolve), checked as the metadata's bundle is. */
export function validBundle(bundle: Partial['bundle'], from: string): NonNullable<VmMetadata['bundle']> {
  const parsed = vmMetadata.safeParse({ bundle });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AgentError('fetch_failed', `${from}: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data.bundle!;
}

/** Signature material from elsewhere (the registry's answer to a resolve), checked as the metadata's is; absent stays absent. */
export function validSigning(signing: unknown, from: string): VmMetadata['signing'] {
  if (signing === undefined) return undefined;
  const parsed = signingMaterial.safeParse(signing);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AgentError('fetch_failed', `${from}: signing.${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function prune<T extends Record<string, unknown>>(o: T): Partial | undefined {
  const entries = Object.entries(o).filter(([, v]) => v !== undefined);
  return entries.length ? (Object.fromEntries(entries) as Partial) : undefined;
}
