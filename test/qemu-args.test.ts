/**
 * The qemu driver's pure parts, without starting QEMU: the command line (the guest
 * reaches nothing but forwards to 127.0.0.1), the kernel command line for /init, the
 * reading of the serial console into timings, and of the exit channel into the exit code.
 */
import { describe, expect, it } from 'vitest';
import { guestForwards, kernelCommandLine, qemuArgs, type VmArgs } from '../packages/sdk/src/orchestrator/qemu/args.js';
import { ConsoleReader, consoleMarker, exitChannelCode } from '../packages/sdk/src/orchestrator/qemu/console.js';
import { AGENT_LOG_PREFIX, AGENT_START_MARKER, EXIT_MARKER, INIT_MARKER } from '../packages/sdk/src/vm-console.js';

const vm: VmArgs = {
  accel: 'tcg',
  memoryMiB: 512,
  cpus: 1,
  kernel: '/img/vmlinuz',
  initrd: '/img/initramfs.cpio',
  append: 'console=ttyS0',
  metadataPort: 8111,
  forwards: [],
  forwardMode: 'exec',
};

/** The value following `flag` in argv. */
const valueAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe('guestForwards', () => {
  it('forwards the metadata service and each given port to 127.0.0.1, per connection through busybox nc', () => {
    expect(
      guestForwards(
        8111,
        [
          { guestPort: 9000, hostPort: 9001 },
          { guestAddress: '169.254.169.21', guestPort: 3000, hostPort: 3000 },
        ],
        'exec',
      ),
    ).toEqual([
      'guestfwd=tcp:169.254.169.254:80-cmd:/bin/busybox nc 127.0.0.1 8111',
      'guestfwd=tcp:169.254.169.20:9000-cmd:/bin/busybox nc 127.0.0.1 9001',
      'guestfwd=tcp:169.254.169.21:3000-cmd:/bin/busybox nc 127.0.0.1 3000',
    ]);
  });

  it('uses one QEMU chardev connection per forward in chardev mode', () => {
    expect(guestForwards(8111, [{ guestPort: 9000, hostPort: 9001 }], 'chardev')).toEqual([
      'guestfwd=tcp:169.254.169.254:80-tcp:127.0.0.1:8111',
      'guestfwd=tcp:169.254.169.20:9000-tcp:127.0.0.1:9001',
    ]);
  });

  const refused: Array<[string, () => unknown, RegExp]> = [
    [
      'an address outside 169.254.169.0/24',
      () => guestForwards(1, [{ guestAddress: '10.0.0.1', guestPort: 1, hostPort: 1 }], 'exec'),
      /must be in 169\.254\.169\.0\/24/,
    ],
    [
      "the guest's own address",
      () => guestForwards(1, [{ guestAddress: '169.254.169.15', guestPort: 1, hostPort: 1 }], 'exec'),
      /not \.0, \.2, \.3, \.15 or \.255/,
    ],
    [
      "slirp's host address",
      () => guestForwards(1, [{ guestAddress: '169.254.169.2', guestPort: 1, hostPort: 1 }], 'exec'),
      /not \.0, \.2/,
    ],
    ['an octet above 255', () => guestForwards(1, [{ guestAddress: '169.254.169.256', guestPort: 1, hostPort: 1 }], 'exec'), /must be in/],
    ['port 0', () => guestForwards(1, [{ guestPort: 0, hostPort: 1 }], 'exec'), /not a TCP port: 0/],
    ['a host port above 65535', () => guestForwards(1, [{ guestPort: 1, hostPort: 70_000 }], 'exec'), /not a TCP port: 70000/],
    ['a bad metadata port', () => guestForwards(1.5, [], 'exec'), /metadataPort: not a TCP port/],
    [
      'the same guest address and port twice',
      () =>
        guestForwards(
          1,
          [
            { guestPort: 5, hostPort: 1 },
            { guestPort: 5, hostPort: 2 },
          ],
          'exec',
        ),
      /given twice/,
    ],
    [
      "the metadata service's address",
      () => guestForwards(1, [{ guestAddress: '169.254.169.254', guestPort: 80, hostPort: 2 }], 'exec'),
      /given twice/,
    ],
  ];
  for (const [what, call, message] of refused) it(`refuses ${what}`, () => expect(call).toThrow(message));
});

describe('kernelCommandLine', () => {
  it('passes settings to /init as swarm.<name>=<value> after the console and panic settings', () => {
    expect(kernelCommandLine({ fetch_attempts: '2', probe: '1' }, ['loglevel=3'])).toBe(
      'console=ttyS0 panic=-1 quiet pci=noacpi swarm.fetch_attempts=2 swarm.probe=1 loglevel=3',
    );
    expect(kernelCommandLine()).toBe('console=ttyS0 panic=-1 quiet pci=noacpi');
  });

  it('refuses setting names /init cannot export and values that would split the command line', () => {
    expect(() => kernelCommandLine({ 'bad-name': 'x' })).toThrow(/names are \[A-Za-z0-9_\]/);
    expect(() => kernelCommandLine({ ok: 'two words' })).toThrow(/values have no spaces or quotes/);
    expect(() => kernelCommandLine({ ok: 'a"b' })).toThrow(/values have no spaces or quotes/);
  });
});

describe('qemuArgs', () => {
  it('boots the kernel with no devices but the console and the exit channel, a restricted user network and the virtio NIC', () => {
    const args = qemuArgs(vm);
    expect(args.slice(0, 15)).toEqual([
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-monitor',
      'none',
      '-serial',
      'stdio',
      '-chardev',
      'socket,id=exit,fd=3',
      '-serial',
      'chardev:exit',
      '-no-reboot',
      '-machine',
      'pc,accel=tcg',
    ]);
    expect(valueAfter(args, '-cpu')).toBe('max');
    expect(valueAfter(args, '-m')).toBe('512');
    expect(valueAfter(args, '-kernel')).toBe('/img/vmlinuz');
    expect(valueAfter(args, '-initrd')).toBe('/img/initramfs.cpio');
    expect(valueAfter(args, '-append')).toBe('console=ttyS0');
    expect(valueAfter(args, '-netdev')).toBe(
      'user,id=n0,restrict=on,ipv6=off,net=169.254.169.0/24,host=169.254.169.2,guestfwd=tcp:169.254.169.254:80-cmd:/bin/busybox nc 127.0.0.1 8111',
    );
    expect(valueAfter(args, '-device')).toBe('virtio-net-pci,netdev=n0,romfile=');
    expect(args).not.toContain('-drive');
  });

  it('uses the host CPU under KVM', () => {
    const args = qemuArgs({ ...vm, accel: 'kvm', cpus: 2 });
    expect(valueAfter(args, '-machine')).toBe('pc,accel=kvm');
    expect(valueAfter(args, '-cpu')).toBe('host');
    expect(valueAfter(args, '-smp')).toBe('2');
  });

  it('attaches the root drive read-only as the first virtio disk, before the cache drive', () => {
    const args = qemuArgs({ ...vm, rootDrive: '/img/root,1.ext4', cacheDrive: '/tmp/cache.ext4' });
    const drives = args.flatMap((a, i) => (a === '-drive' ? [args[i + 1]] : []));
    expect(drives).toEqual([
      'file=/img/root,,1.ext4,if=none,id=root,format=raw,readonly=on',
      'file=/tmp/cache.ext4,if=none,id=cache,format=raw',
    ]);
    expect(args.filter((a) => a.startsWith('virtio-blk-pci'))).toEqual(['virtio-blk-pci,drive=root', 'virtio-blk-pci,drive=cache']);
  });

  it('attaches a cache drive as a virtio disk, escaping commas in its path', () => {
    const args = qemuArgs({ ...vm, cacheDrive: '/tmp/a,b/cache.ext4' });
    expect(valueAfter(args, '-drive')).toBe('file=/tmp/a,,b/cache.ext4,if=none,id=cache,format=raw');
    expect(args.slice(-2)).toEqual(['-device', 'virtio-blk-pci,drive=cache']);
  });

  it('refuses a forward that would inject netdev options', () => {
    expect(() => qemuArgs({ ...vm, busybox: '/bin/busybox,hostfwd=tcp::22-:22' })).toThrow(/contains a comma/);
  });
});

describe('the serial console', () => {
  it('knows the lines /init and the boot agent print', () => {
    expect(consoleMarker(`${INIT_MARKER} uptime=4.52`)).toEqual({ kind: 'init', guestUptimeMs: 4520 });
    expect(consoleMarker(INIT_MARKER)).toEqual({ kind: 'init' });
    expect(consoleMarker(AGENT_START_MARKER)).toEqual({ kind: 'agent-start' });
    expect(consoleMarker(`${AGENT_LOG_PREFIX}unpacked 3 files (120 bytes) into /opt/workflow`)).toEqual({ kind: 'unpacked' });
    for (const other of [`${EXIT_MARKER}`, `${EXIT_MARKER}1 `, ` ${EXIT_MARKER}1`, `${AGENT_START_MARKER} `, 'hello'])
      expect(consoleMarker(other), other).toBeUndefined();
  });

  it('takes no exit code from the console, where the workload writes too (`echo SWARM_EXIT=0; exit 1`)', () => {
    expect(consoleMarker(`${EXIT_MARKER}0`)).toBeUndefined();
    const reader = new ConsoleReader({ since: () => 0 });
    reader.push(`${EXIT_MARKER}0\r\n`);
    expect(reader).not.toHaveProperty('exitCode');
    expect(reader.timings).not.toHaveProperty('exitMarkerMs');
  });

  it('splits chunks into lines without CR/LF and times each marker', () => {
    let now = 0;
    const lines: string[] = [];
    const reader = new ConsoleReader({ since: () => now, onLine: (l) => lines.push(l) });
    now = 100;
    reader.push(`boot\r\n${INIT_MARKER} upt`);
    now = 200;
    reader.push(`ime=1.5\r\n${AGENT_START_MARKER}\n`);
    now = 300;
    reader.push(`${EXIT_MARKER}3\r\r\n${EXIT_MARKER}4\nlast words`);
    reader.end();
    expect(lines).toEqual(['boot', `${INIT_MARKER} uptime=1.5`, AGENT_START_MARKER, `${EXIT_MARKER}3`, `${EXIT_MARKER}4`, 'last words']);
    expect(reader.timings).toEqual({
      firstOutputMs: 100,
      bootToInitMs: 200,
      guestUptimeAtInitMs: 1500,
      agentStartMs: 200,
    });
    expect(reader.text).toBe(
      `boot\r\n${INIT_MARKER} uptime=1.5\r\n${AGENT_START_MARKER}\n${EXIT_MARKER}3\r\r\n${EXIT_MARKER}4\nlast words`,
    );
  });

  it('survives a listener that throws', () => {
    const reader = new ConsoleReader({
      since: () => 0,
      onLine: () => {
        throw new Error('listener bug');
      },
    });
    reader.push(`${AGENT_START_MARKER}\n`);
    expect(reader.timings.agentStartMs).toBe(0);
  });

  it('keeps the last 4 MiB of the console and passes a line with no end on once it is over 64 KiB', () => {
    const lines: string[] = [];
    const reader = new ConsoleReader({ since: () => 0, onLine: (l) => lines.push(l) });
    const chunk = 'x'.repeat(70_000);
    for (let i = 0; i < 70; i++) reader.push(chunk);
    expect(reader.text.length).toBe(4 * 1024 * 1024);
    expect(lines).toHaveLength(70);
    expect(lines.every((l) => l.length === 70_000)).toBe(true);
  });
});

describe('the exit channel', () => {
  it("reads the exit code from its first line, once the line is complete (the tty's CR/LF included)", () => {
    expect(exitChannelCode(`${EXIT_MARKER}65\r\n`)).toBe(65);
    expect(exitChannelCode(`${EXIT_MARKER}0\n`)).toBe(0);
    expect(exitChannelCode(`${EXIT_MARKER}1`)).toBeUndefined(); // more digits may follow
    expect(exitChannelCode('')).toBeUndefined();
  });

  it('takes nothing but a first line of exactly SWARM_EXIT=<digits>', () => {
    for (const other of [`x\n${EXIT_MARKER}0\n`, ` ${EXIT_MARKER}0\n`, `${EXIT_MARKER}\n`, `${EXIT_MARKER}0 \n`, `${EXIT_MARKER}-1\n`])
      expect(exitChannelCode(other), other).toBeUndefined();
  });
});
