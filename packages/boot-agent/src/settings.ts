/**
 * The agent's settings, each written once: its flag, its environment variable, its words
 * in --help and its default. Flags and variables share one name space: a flag overrides
 * the variable of the same meaning. Plain data, not a zod schema, so that start-up stays
 * lean; values are checked where they are read, as before.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_BUNDLE_LIMITS } from '@swarm/sdk/bundle-rules';
import { AgentError } from './errors.js';
import { DEFAULT_FETCH } from './fetch.js';

type Setting = {
  /** The flag without "--"; none where only the environment (or what follows `--`) gives it. */
  flag?: string;
  /** How --help shows the flag's value (or the whole usage, without a flag). */
  arg: string;
  env: string;
  /** --help's words for it; a line break continues under the first line. */
  help?: string;
  default?: string | number;
  /** Whole-number settings: the least value allowed. */
  min?: number;
};

const SECTIONS = [
  {
    title: 'Metadata (first found wins: flag, environment, MMDS, metadata file):',
    settings: [
      { flag: 'bundle-url', arg: 'URL', env: 'BUNDLE_URL', help: 'where to download the bundle (http/https)' },
      { flag: 'bundle-hash', arg: 'HEX', env: 'BUNDLE_HASH', help: 'expected sha256 (64 lowercase hex)' },
      { flag: 'bundle-size', arg: 'N', env: 'BUNDLE_SIZE', help: 'expected size in bytes (optional)' },
      {
        flag: 'bundle-tree-digest',
        arg: 'HEX',
        env: 'BUNDLE_TREE_DIGEST',
        help: "the registry's digest of the unpacked bundle (optional):\na warm boot checks the cached tree against it without gunzip",
      },
      { flag: 'workflow', arg: 'REF', env: 'SWARM_WORKFLOW', help: "with no bundle: resolve this workflow's active version" },
      { flag: 'api-url', arg: 'URL', env: 'SWARM_API_URL', help: "the registry's API (events, resolving)" },
      { flag: 'execution-id', arg: 'ID', env: 'SWARM_EXECUTION_ID', help: 'execution to report events for' },
      {
        // No flag: a process's argv (/proc/<pid>/cmdline) is readable by every user, the workload's too.
        arg: '(environment only)',
        env: 'SWARM_AGENT_TOKEN',
        help: "the execution's bootstrap token, traded for a session at start",
      },
      {
        arg: '-- command...',
        env: 'SWARM_RUNTIME_CMD',
        help: 'the command to run (JSON array in the environment);\ndefault: "entrypoint" of swarm.json in the bundle',
      },
      {
        flag: 'metadata-file',
        arg: 'PATH',
        env: 'SWARM_METADATA_FILE',
        help: 'JSON metadata document',
        default: '/run/swarm/metadata.json',
      },
      { flag: 'mmds-url', arg: 'URL', env: 'SWARM_MMDS_URL', help: 'Firecracker MMDS, or "off"', default: 'http://169.254.169.254' },
    ],
  },
  {
    title: 'Agent settings:',
    settings: [
      { flag: 'cache-dir', arg: 'DIR', env: 'SWARM_CACHE_DIR', default: '/var/cache/swarm/bundles' },
      {
        flag: 'trust-root',
        arg: 'PATH',
        env: 'SWARM_TRUST_ROOT',
        help: "the platform root's public key (SPKI PEM): run only bundles signed under it;\nnever taken from the metadata (docs/signing.md)",
        default: '/opt/swarm/trust/root.pub',
      },
      { flag: 'workflow-dir', arg: 'DIR', env: 'SWARM_WORKFLOW_DIR', default: '/opt/workflow' },
      {
        flag: 'runtime-user',
        arg: 'USER',
        env: 'SWARM_RUNTIME_USER',
        help: 'when the agent runs as root, the workflow runs as this user\n(from /etc/passwd; never taken from the metadata)',
        default: 'swarm',
      },
      { flag: 'cache-max-bytes', arg: 'N', env: 'SWARM_CACHE_MAX_BYTES', default: 2 * 1024 ** 3, min: 0 },
      { flag: 'max-bundle-bytes', arg: 'N', env: 'SWARM_MAX_BUNDLE_BYTES', default: 512 * 1024 ** 2, min: 1 },
      { flag: 'max-unpacked-bytes', arg: 'N', env: 'SWARM_MAX_UNPACKED_BYTES', default: DEFAULT_BUNDLE_LIMITS.maxBytes, min: 1 },
      { flag: 'max-entries', arg: 'N', env: 'SWARM_MAX_ENTRIES', default: DEFAULT_BUNDLE_LIMITS.maxEntries, min: 1 },
      { flag: 'fetch-attempts', arg: 'N', env: 'SWARM_FETCH_ATTEMPTS', default: DEFAULT_FETCH.attempts, min: 1 },
      {
        flag: 'min-rate',
        arg: 'N',
        env: 'SWARM_FETCH_MIN_BYTES_PER_SECOND',
        help: 'bytes per second, over --stall-seconds',
        default: DEFAULT_FETCH.minBytesPerSecond,
        min: 0,
      },
      { flag: 'stall-seconds', arg: 'N', env: 'SWARM_FETCH_STALL_SECONDS', default: DEFAULT_FETCH.stallWindowMs / 1000, min: 1 },
      {
        flag: 'exchange-seconds',
        arg: 'N',
        env: 'SWARM_EXCHANGE_SECONDS',
        help: 'how long to try trading the agent token for a session;\nafter that the workflow runs without reporting',
        default: 10,
        min: 1,
      },
      {
        flag: 'stop-grace-seconds',
        arg: 'N',
        env: 'SWARM_STOP_GRACE_SECONDS',
        help: 'a cancelled or timed-out workflow gets SIGTERM, then SIGKILL\nafter this long',
        default: 10,
        min: 0,
      },
    ],
  },
] as const satisfies ReadonlyArray<{ title: string; settings: readonly Setting[] }>;

type Entry = (typeof SECTIONS)[number]['settings'][number];
type Vars = Record<string, string | undefined>;

const SETTINGS = SECTIONS.flatMap((s): readonly Setting[] => s.settings);
const byName = (name: Entry['env']): Setting => SETTINGS.find((s) => s.env === name)!;

const EXIT_CODES = `Exit codes: the runtime's own code once it has started; before that
  64 bad usage or metadata   65 hash mismatch (after retries)
  66 unsafe or invalid bundle (refused entry, cap exceeded, not a gzip'd tar)
  67 untrusted: a trust root is set and the bundle's signature does not verify under it
  69 store unreachable or fetch failed   70 internal error
`;

/** --help, from the table: one row a setting, columns as wide as each section needs. */
export function helpText(): string {
  const out = [
    'Usage: swarm-boot-agent [options] [-- command...]',
    '',
    'Fetches a workflow bundle, verifies its sha256, unpacks it and runs it.',
    '',
  ];
  for (const { title, settings } of SECTIONS) {
    const rows = settings.map((s: Setting) => {
      const usage = s.flag ? `--${s.flag} ${s.arg}` : s.arg;
      const words = s.default === undefined ? s.help! : s.help ? `${s.help} (default ${s.default})` : `default ${s.default}`;
      return { usage, env: s.env, words: words.split('\n') };
    });
    const usageWidth = Math.max(...rows.map((r) => r.usage.length)) + 2;
    const envWidth = Math.max(...rows.map((r) => r.env.length)) + 2;
    out.push(title);
    for (const r of rows) {
      out.push(`  ${r.usage.padEnd(usageWidth)}${r.env.padEnd(envWidth)}${r.words[0]}`);
      for (const more of r.words.slice(1)) out.push(`${' '.repeat(2 + usageWidth + envWidth)}${more}`);
    }
    out.push('');
  }
  return [...out, EXIT_CODES].join('\n');
}

export type Invocation = {
  help: boolean;
  /** Flags and environment in one name space, by variable name: a flag overrides its variable. */
  vars: Vars;
  /** Only what the flags gave, by variable name. */
  fromFlags: Vars;
  /** The command after `--`, if any. */
  runtime: string[] | undefined;
};

export function parseInvocation(argv: string[], env: Vars): Invocation {
  const flagged = SETTINGS.filter((s): s is Setting & { flag: string } => s.flag !== undefined);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { help: { type: 'boolean', short: 'h' }, ...Object.fromEntries(flagged.map((s) => [s.flag, { type: 'string' as const }])) },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new AgentError('bad_metadata', `${(err as Error).message} (see --help)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const fromFlags: Vars = {};
  for (const s of flagged) fromFlags[s.env] = values[s.flag] as string | undefined;
  const vars: Vars = { ...env };
  for (const [k, v] of Object.entries(fromFlags)) if (v !== undefined) vars[k] = v;
  return { help: values.help === true, vars, fromFlags, runtime: parsed.positionals.length ? parsed.positionals : undefined };
}

/** A text setting: as given, else its default. */
export function text(vars: Vars, name: Extract<Entry, { default: string }>['env']): string {
  return vars[name] ?? String(byName(name).default);
}

/** A whole-number setting: as given (checked against its least value), else its default. */
export function count(vars: Vars, name: Extract<Entry, { min: number }>['env']): number {
  const { default: fallback, min = 0 } = byName(name);
  const raw = vars[name];
  if (raw === undefined) return fallback as number;
  if (!/^\d+$/.test(raw) || Number(raw) < min)
    throw new AgentError('bad_metadata', `${name}: must be a whole number ≥ ${min}, not "${raw}"`);
  return Number(raw);
}
