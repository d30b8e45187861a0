/**
 * The VM's /init is a shell heredoc in scripts/vm/build-image.sh; the qemu driver reads
 * its console lines with the markers of packages/sdk/src/vm-console.ts. This fails if
 * /init prints a marker line the module does not define, or misses one it does.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { consoleMarker } from '../packages/sdk/src/orchestrator/qemu/console.js';
import { AGENT_START_MARKER, EXIT_MARKER, INIT_MARKER } from '../packages/sdk/src/vm-console.js';

const root = path.resolve(import.meta.dirname, '..');

it("build-image.sh's /init prints exactly the console markers of vm-console.ts", async () => {
  const script = await fs.readFile(path.join(root, 'scripts/vm/build-image.sh'), 'utf8');
  const init = /^cat > "\$RFS\/init" <<'INIT'\n([\s\S]*?)^INIT$/m.exec(script)?.[1];
  expect(init, 'the /init heredoc').toBeDefined();
  // Every line /init echoes that starts like a marker (SWARM_…), in order of appearance.
  const echoed = [...init!.matchAll(/^\s*echo "(SWARM_[^"]*)"$/gm)].map((m) => m[1]!);
  expect(echoed).toEqual([`${INIT_MARKER} uptime=$(cut -d' ' -f1 /proc/uptime)`, `${EXIT_MARKER}$1`, AGENT_START_MARKER]);
  // And the driver reads each as what it is, once the shell has filled in its values.
  expect(consoleMarker(echoed[0]!.replace('$(cut -d\' \' -f1 /proc/uptime)', '4.52'))).toEqual({ kind: 'init', guestUptimeMs: 4520 });
  expect(consoleMarker(echoed[1]!.replace('$1', '70'))).toEqual({ kind: 'exit', code: 70 });
  expect(consoleMarker(echoed[2]!)).toEqual({ kind: 'agent-start' });
});
