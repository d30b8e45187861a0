/**
 * What a VM prints for the host to read: the lines the image's /init writes
 * (scripts/vm/build-image.sh) on the serial console and on the exit channel, and the boot
 * agent's log prefix; test/vm-console.test.ts fails when either prints something else.
 * The qemu driver turns them into boot timings and the exit code (orchestrator/qemu/).
 *
 * No imports: the boot agent and scripts can take these constants without weight.
 */

/** `SWARM_INIT uptime=<seconds>`: /init has started; the guest kernel's uptime then. */
export const INIT_MARKER = 'SWARM_INIT';

/** /init hands over to boot.sh: modules, network and the cache drive are done. */
export const AGENT_START_MARKER = 'SWARM_AGENT_START';

/**
 * `SWARM_EXIT=<code>`: boot.sh's exit code (the workflow's, or the agent's own), written by
 * /init on EXIT_CHANNEL, never on the console; /init powers off next.
 */
export const EXIT_MARKER = 'SWARM_EXIT=';

/**
 * The exit channel: the VM's second serial port, which only root may open (0600) and only
 * /init opens, once boot.sh has ended. The workload's output goes to the console, so a
 * workload printing `SWARM_EXIT=0` there cannot change the exit code the host reads.
 */
export const EXIT_CHANNEL = '/dev/ttyS1';

/** Every line the boot agent logs starts so (its stderr is the console inside the VM). */
export const AGENT_LOG_PREFIX = 'swarm-boot-agent: ';
