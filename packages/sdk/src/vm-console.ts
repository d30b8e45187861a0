/**
 * What a VM prints on its serial console for the host to read: the lines the image's
 * /init writes (scripts/vm/build-image.sh) and the boot agent's log prefix;
 * test/vm-console.test.ts fails when either prints something else. The qemu driver
 * turns them into the exit code and boot timings (orchestrator/qemu/console.ts).
 *
 * No imports: the boot agent and scripts can take these constants without weight.
 */

/** `SWARM_INIT uptime=<seconds>`: /init has started; the guest kernel's uptime then. */
export const INIT_MARKER = 'SWARM_INIT';

/** /init hands over to boot.sh: modules, network and the cache drive are done. */
export const AGENT_START_MARKER = 'SWARM_AGENT_START';

/** `SWARM_EXIT=<code>`: boot.sh's exit code (the workflow's, or the agent's own); /init powers off next. */
export const EXIT_MARKER = 'SWARM_EXIT=';

/** Every line the boot agent logs starts so (its stderr is the console inside the VM). */
export const AGENT_LOG_PREFIX = 'swarm-boot-agent: ';
