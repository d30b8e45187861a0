/**
 * Files that look like secrets, which a push refuses to pack: whoever can read a bundle
 * (the store, every VM that runs the workflow, anyone with a download URL) could read
 * them. Secrets reach a workflow through the orchestrator instead
 * (`swarm spawn --secret KEY=VALUE`), which puts them only into the VM's metadata.
 *
 * A file is refused when its path matches one of SECRET_FILE_PATTERNS (gitignore syntax,
 * case-insensitive, any depth) or when its first bytes hold a private key or an npm auth
 * token. The list is documented in docs/bundles.md; keep the two in step.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import ignore from 'ignore';
import { SwarmError } from './errors.js';

export const SECRET_FILE_PATTERNS: readonly string[] = [
  // dotenv files; the usual committed templates are not secrets.
  '.env',
  '.env.*',
  '!.env.example',
  '!.env.sample',
  '!.env.template',
  // keys and key stores
  '*.pem',
  '*.key',
  '*.p12',
  '*.pfx',
  '*.jks',
  '*.keystore',
  '*.ppk',
  // SSH private keys (the .pub halves do not match)
  'id_rsa',
  'id_dsa',
  'id_ecdsa',
  'id_ed25519',
  'id_ecdsa_sk',
  'id_ed25519_sk',
  // cloud and tool credentials
  '**/.aws/credentials',
  'application_default_credentials.json',
  '**/.docker/config.json',
  '**/.kube/config',
  '.netrc',
  '_netrc',
  '.pgpass',
  '.git-credentials',
];

/** How much of each file is read to look for key material: a bounded, cheap sniff. */
export const SNIFF_BYTES = 8192;
const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----/;
/** An auth setting in an .npmrc whose value is not just an environment reference (`${NPM_TOKEN}`). */
const NPM_AUTH = /^\s*[^#;\s]*(?:_authToken|_auth|_password)\s*=\s*(?!"?\$\{[A-Za-z_][A-Za-z0-9_]*\}"?\s*$)\S/m;
const MAX_NAMED = 20;
const SNIFF_CONCURRENCY = 16;

export type SecretFile = { path: string; reason: string };

const byName = ignore({ ignorecase: true }).add(SECRET_FILE_PATTERNS);

/**
 * Which of the files to be packed look like secrets. `files` are tree paths; `source` is
 * where the bytes are read from (differs for a symlink, whose target's name counts too).
 */
export async function findSecretFiles(files: ReadonlyArray<{ path: string; source: string; sourcePath: string }>): Promise<SecretFile[]> {
  const found: Array<SecretFile | undefined> = new Array(files.length);
  let next = 0;
  // A few reads in flight at once: one at a time, open/read/close latency dominates.
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      found[i] = await check(files[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(SNIFF_CONCURRENCY, files.length) }, worker));
  return found.filter((f): f is SecretFile => f !== undefined);
}

async function check(f: { path: string; source: string; sourcePath: string }): Promise<SecretFile | undefined> {
  const named = [f.path, f.sourcePath].map((p) => byName.test(p)).find((t) => t.ignored);
  if (named) return { path: f.path, reason: `matches ${named.rule?.pattern ?? 'a secret file name'}` };
  const head = await readHead(f.source);
  if (PRIVATE_KEY.test(head)) return { path: f.path, reason: 'holds a private key' };
  if (path.posix.basename(f.sourcePath) === '.npmrc' && NPM_AUTH.test(head)) return { path: f.path, reason: 'holds an npm auth token' };
  return undefined;
}

async function readHead(file: string): Promise<string> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(buf, 0, SNIFF_BYTES, 0);
    return buf.toString('latin1', 0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The one-line refusal naming the files (the first 20, then how many more). */
export function secretFilesError(found: readonly SecretFile[]): SwarmError {
  const named = found.slice(0, MAX_NAMED).map((f) => `${f.path} (${f.reason})`);
  const more = found.length > MAX_NAMED ? ` and ${found.length - MAX_NAMED} more` : '';
  return new SwarmError(
    'INVALID_INPUT',
    `refusing to pack ${found.length === 1 ? 'a file that looks like a secret' : `${found.length} files that look like secrets`}: ${named.join(', ')}${more}`,
    'secrets reach a workflow through the orchestrator (swarm spawn --secret KEY=VALUE), never inside a bundle; exclude these files in .swarmignore, or pass --allow-secret-files if they are not secret',
  );
}
