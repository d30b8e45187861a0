/**
 * Figure 8: what signature verification adds to a boot — the agent's step itself
 * (verify.ts: read the trust root, then the chain root → delegation → statement), timed
 * as its first and only call in a fresh Node process (a cold boot runs it once), median
 * of many processes. Target: ≤ 5 ms. In-process repeated calls are kept in the notes.
 *
 * Run as `node --import tsx bench/signing.ts --child <dir>` it is one such process: it
 * prints the step's milliseconds as one JSON line.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadTrustRoot, verifyBundle } from '../packages/boot-agent/src/verify.js';
import type { VmMetadata } from '../packages/sdk/src/contract/metadata.js';
import { createDelegation, signStatement } from '../packages/sdk/src/signing/index.js';
import type { FigureContext, Row } from './lib/figure.js';
import { row } from './lib/figure.js';
import { summarize } from './lib/stats.js';

const HASH = 'ab'.repeat(32);
const PROCESSES = 25;
const IN_PROCESS = 500;

/** The step as the agent runs it. */
function step(dir: string, metadata: VmMetadata): number {
  const t = performance.now();
  const root = loadTrustRoot(path.join(dir, 'root.pub'), true);
  verifyBundle(root!, metadata, { hash: HASH });
  return performance.now() - t;
}

async function fixture(dir: string): Promise<VmMetadata> {
  const root = generateKeyPairSync('ed25519');
  const key = generateKeyPairSync('ed25519');
  await fs.writeFile(path.join(dir, 'root.pub'), root.publicKey.export({ type: 'spki', format: 'pem' }));
  const delegation = createDelegation(root.privateKey, {
    tenant: 'acme',
    publicKey: key.publicKey,
    notAfter: new Date(Date.now() + 86_400_000),
  });
  const signing = {
    ...signStatement(key.privateKey, { tenant: 'acme', workflow: 'app', bundleHash: HASH, treeDigest: 'cd'.repeat(32) }),
    delegation,
  };
  const metadata = { bundle: { url: 'http://127.0.0.1/b', hash: HASH }, secrets: {}, signing, expectedWorkflow: 'acme/app' } as VmMetadata;
  await fs.writeFile(path.join(dir, 'metadata.json'), JSON.stringify(metadata));
  return metadata;
}

export async function signingFigure(ctx: FigureContext): Promise<Row[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-bench-signing-'));
  try {
    const metadata = await fixture(dir);
    const cold: number[] = [];
    for (let i = 0; i < PROCESSES; i++) {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', dir], {
        timeout: 60_000,
      });
      cold.push((JSON.parse(stdout) as { ms: number }).ms);
    }
    const warm: number[] = [];
    for (let i = 0; i < IN_PROCESS; i++) warm.push(step(dir, metadata));
    const w = summarize(warm);
    ctx.log(
      `  #8 cold median ${summarize(cold).median.toFixed(2)} ms over ${PROCESSES} processes; in-process median ${w.median.toFixed(3)} ms`,
    );
    return [
      row({
        id: '8',
        what: 'signature verification in the boot agent (trust root + delegation + statement), first call in a fresh process',
        unit: 'ms',
        ours: summarize(cold),
        target: { op: '<=', value: 5, on: 'value' },
        notes: { processes: PROCESSES, inProcessCalls: IN_PROCESS, inProcessMedianMs: w.median, inProcessMaxMs: w.max },
      }),
    ];
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const dir = process.argv[3]!;
  const metadata = JSON.parse(await fs.readFile(path.join(dir, 'metadata.json'), 'utf8')) as VmMetadata;
  console.log(JSON.stringify({ ms: step(dir, metadata) }));
}
