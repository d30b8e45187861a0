/**
 * The qemu driver reads the VM's console and exit channel with the markers of
 * packages/sdk/src/vm-console.ts. The lines come from /init, a shell heredoc in
 * scripts/vm/build-image.sh, and from the boot agent: this fails when either prints
 * something else than the module defines, or /init writes the exit code anywhere but on
 * the exit channel.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { consoleMarker, exitChannelCode } from '../packages/sdk/src/orchestrator/qemu/console.js';
import { AGENT_LOG_PREFIX, AGENT_START_MARKER, EXIT_CHANNEL, EXIT_MARKER, INIT_MARKER } from '../packages/sdk/src/vm-console.js';

const root = path.resolve(import.meta.dirname, '..');

const initScript = async () => {
  const script = await fs.readFile(path.join(root, 'scripts/vm/build-image.sh'), 'utf8');
  const init = /^cat > "\$RFS\/init" <<'INIT'\n([\s\S]*?)^INIT$/m.exec(script)?.[1];
  expect(init, 'the /init heredoc').toBeDefined();
  return init!;
};

it("build-image.sh's /init prints exactly the console markers of vm-console.ts", async () => {
  const init = await initScript();
  // Every line /init echoes to the console that starts like a marker (SWARM_…), in order of appearance.
  const echoed = [...init.matchAll(/^\s*echo "(SWARM_[^"]*)"$/gm)].map((m) => m[1]!);
  expect(echoed).toEqual([`${INIT_MARKER} uptime=$(cut -d' ' -f1 /proc/uptime)`, AGENT_START_MARKER]);
  // And the driver reads each as what it is, once the shell has filled in its values.
  expect(consoleMarker(echoed[0]!.replace("$(cut -d' ' -f1 /proc/uptime)", '4.52'))).toEqual({ kind: 'init', guestUptimeMs: 4520 });
  expect(consoleMarker(echoed[1]!)).toEqual({ kind: 'agent-start' });
});

it("build-image.sh's /init writes the exit code on the exit channel only, which it keeps root's", async () => {
  const init = await initScript();
  const exitLines = init.split('\n').filter((l) => l.includes(EXIT_MARKER) || l.includes(EXIT_CHANNEL));
  expect(exitLines.map((l) => l.trim())).toEqual([`chmod 600 ${EXIT_CHANNEL}`, `echo "${EXIT_MARKER}$1" >${EXIT_CHANNEL}`]);
  // What the tty delivers for it (ONLCR: CR LF) is the exit code to the driver.
  expect(exitChannelCode(`${EXIT_MARKER}70\r\n`)).toBe(70);
});

it('the boot agent logs its lines with the prefix of vm-console.ts', async () => {
  const agent = promisify(execFile)(
    path.join(root, 'node_modules/.bin/tsx'),
    [path.join(root, 'packages/boot-agent/src/main.ts'), '--no-such-flag'],
    { env: { PATH: process.env.PATH } },
  );
  const { stderr } = (await agent.catch((err: { stderr: string }) => err)) as { stderr: string };
  expect(stderr.startsWith(AGENT_LOG_PREFIX), stderr).toBe(true);
});
