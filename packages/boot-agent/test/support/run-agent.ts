/**
 * Runs the boot agent as a real process (from source, through tsx) in a scratch directory
 * of its own, and reports its exit code, output and what it left on disk.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const agentMain = path.join(root, 'packages/boot-agent/src/main.ts');

export type AgentRun = { code: number; stdout: string; stderr: string };

export type AgentSandbox = {
  dir: string;
  cacheDir: string;
  workflowDir: string;
  /** Runs the agent with the sandbox's cache and workflow directories, MMDS off. */
  run(args: string[], env?: Record<string, string>, timeoutMs?: number): Promise<AgentRun>;
  /** Every path under the sandbox, relative, sorted (to prove nothing else was written). */
  tree(): Promise<string[]>;
  remove(): Promise<void>;
};

export async function agentSandbox(): Promise<AgentSandbox> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-agent-'));
  // Run as root, the agent runs workflows as `nobody`, who must reach the workflow directory.
  await fs.chmod(dir, 0o711);
  const cacheDir = path.join(dir, 'cache');
  const workflowDir = path.join(dir, 'workflow');
  return {
    dir,
    cacheDir,
    workflowDir,
    run: (args, env = {}, timeoutMs = 60_000) =>
      new Promise((resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', agentMain, ...args],
          {
            cwd: root,
            timeout: timeoutMs,
            env: {
              PATH: process.env.PATH,
              HOME: process.env.HOME,
              SWARM_CACHE_DIR: cacheDir,
              SWARM_WORKFLOW_DIR: workflowDir,
              SWARM_MMDS_URL: 'off',
              SWARM_METADATA_FILE: path.join(dir, 'metadata.json'),
              SWARM_RUNTIME_USER: 'nobody',
              ...env,
            },
            maxBuffer: 16 * 1024 * 1024,
          },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      }),
    tree: async () => {
      const out: string[] = [];
      const walk = async (rel: string) => {
        for (const d of await fs.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => [])) {
          const r = rel ? `${rel}/${d.name}` : d.name;
          out.push(d.isDirectory() ? `${r}/` : d.isSymbolicLink() ? `${r}@` : r);
          if (d.isDirectory()) await walk(r);
        }
      };
      await walk('');
      return out.sort();
    },
    remove: () => fs.rm(dir, { recursive: true, force: true }),
  };
}
