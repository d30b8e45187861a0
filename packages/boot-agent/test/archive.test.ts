/**
 * The archive walker in-process: what it hands a sink, how it fails, and the tree digest
 * it can compute in the same pass, which must equal the digest of the tree unpacking
 * writes to disk, computed from the files alone.
 */
import { createHash } from 'node:crypto';
import fsSync, { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, test, type TestContext } from 'vitest';
import {
  type ArchiveSink,
  DEFAULT_BUNDLE_LIMITS,
  SMALL_FILE,
  type TreeEntry,
  UnsafeBundle,
  startArchiveWalk,
  treeDigest,
  unpackedMode,
  walkArchive,
} from '@swarm/sdk/bundle-rules';
import { unpackBundle } from '../src/unpack.js';
import { gzipBombFile } from './support/archives.js';
import { type TarEntry, gzip, noise, tarBytes } from './support/fixtures.js';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A bundle with what a digest must get right: nesting, implied directories, modes, an empty file, a streamed file, non-ASCII names. */
const FIXTURE: TarEntry[] = [
  { path: 'swarm.json', body: '{"entrypoint":["./bin/run"]}' },
  { path: 'bin/', type: 'Directory' },
  { path: 'bin/run', mode: 0o4755, body: '#!/bin/sh\necho hi\n' },
  { path: 'lib/deep/er/module.js', body: 'export {};\n' },
  { path: 'empty', body: '' },
  { path: 'data/big.bin', body: noise(SMALL_FILE + 12_345) },
  { path: 'données/ü.txt', mode: 0o600, body: 'grüße\n' },
  { path: 'z-last/', type: 'Directory' },
];

/** Records what the walker hands over; writes nothing (files go to /dev/null, whose fd the walker closes). */
function recordingSink() {
  const seen: string[] = [];
  const sink: ArchiveSink = {
    directory: (rel) => void seen.push(`dir ${rel}`),
    file(f) {
      const chunks: Buffer[] = [];
      return {
        fd: fsSync.openSync('/dev/null', 'w'),
        write: (chunk) => void chunks.push(chunk),
        end: () => void seen.push(`file ${f.rel} ${f.mode.toString(8)} ${sha256(Buffer.concat(chunks))}`),
      };
    },
  };
  return { sink, seen };
}

const fromBytes = (bytes: Buffer) => [bytes];

/** The tree digest the walker computes for a gzip'd archive. */
const walkedDigest = async (archive: Buffer) =>
  (await walkArchive(fromBytes(archive), DEFAULT_BUNDLE_LIMITS, recordingSink().sink, { treeDigest: true })).treeDigest;

async function scratch(ctx: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-archive-'));
  ctx.onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The tree digest of a directory on disk, from its files alone (no archive involved). */
function digestOnDisk(root: string): string {
  const entries: TreeEntry[] = [];
  const walk = (rel: string) => {
    for (const d of fsSync.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        entries.push({ type: 'dir', path: r });
        walk(r);
      } else {
        const bytes = fsSync.readFileSync(path.join(root, r));
        entries.push({
          type: 'file',
          path: r,
          mode: unpackedMode(fsSync.statSync(path.join(root, r)).mode),
          size: bytes.length,
          sha256: sha256(bytes),
        });
      }
    }
  };
  walk('');
  return treeDigest(entries);
}

describe('walkArchive', () => {
  test('hands each checked entry to the sink in archive order, each directory once, parents before their files', async () => {
    const { sink, seen } = recordingSink();
    const bytes = gzip(
      tarBytes([
        { path: 'a/b/c.txt', body: 'c' },
        { path: 'a/', type: 'Directory' },
        { path: 'a/b/x', mode: 0o700, body: 'x' },
      ]),
    );
    const walked = await walkArchive(fromBytes(bytes), DEFAULT_BUNDLE_LIMITS, sink);
    expect(seen).toEqual(['dir a/b', `file a/b/c.txt 644 ${sha256('c')}`, 'dir a', `file a/b/x 755 ${sha256('x')}`]);
    expect(walked.counts).toEqual({ files: 2, directories: 1, bytes: 2 });
    expect(walked.treeDigest).toBeUndefined();
  });

  test('streams a large file to the sink in chunks at increasing positions', async () => {
    const body = noise(SMALL_FILE + 1);
    const positions: number[] = [];
    const sink: ArchiveSink = {
      directory: () => {},
      file: () => ({ fd: fsSync.openSync('/dev/null', 'w'), write: (_c, at) => void positions.push(at), end: () => {} }),
    };
    await walkArchive(fromBytes(gzip(tarBytes([{ path: 'big', body }]))), DEFAULT_BUNDLE_LIMITS, sink);
    expect(positions.length).toBeGreaterThan(1);
    expect(positions[0]).toBe(0);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
  });

  test('refuses an entry the rules refuse, with an UnsafeBundle naming it, and hands nothing more over', async () => {
    const { sink, seen } = recordingSink();
    const entries: TarEntry[] = [
      { path: 'a', body: 'a' },
      { path: 'link', type: 'SymbolicLink', linkpath: '/etc' },
      { path: 'b', body: 'b' },
    ];
    const walk = walkArchive(fromBytes(gzip(tarBytes(entries))), DEFAULT_BUNDLE_LIMITS, sink);
    await expect(walk).rejects.toThrow(UnsafeBundle);
    await expect(walk).rejects.toThrow('entry "link" is a SymbolicLink; bundles may hold only regular files and directories');
    expect(seen).toEqual([`file a 644 ${sha256('a')}`]);
  });

  test("passes the parser's refusal of an archive with no entries", async () => {
    await expect(walkArchive(fromBytes(gzip(tarBytes([]))), DEFAULT_BUNDLE_LIMITS, recordingSink().sink)).rejects.toThrow(
      'TAR_BAD_ARCHIVE',
    );
  });

  test("passes the sink's own error on as it was raised, and closes the open file", async () => {
    let fd = -1;
    const sink: ArchiveSink = {
      directory: () => {},
      file: () => {
        fd = fsSync.openSync('/dev/null', 'w');
        return {
          fd,
          write: () => {
            throw new Error('disk full');
          },
          end: () => {},
        };
      },
    };
    await expect(walkArchive(fromBytes(gzip(tarBytes([{ path: 'f', body: 'x' }]))), DEFAULT_BUNDLE_LIMITS, sink)).rejects.toThrow(
      'disk full',
    );
    expect(() => fsSync.fstatSync(fd)).toThrow(/EBADF/);
  });

  test("passes the parser's error on for what is not a gzip'd tar", async () => {
    await expect(
      walkArchive(fromBytes(gzip(Buffer.from('not a tar'.repeat(200)))), DEFAULT_BUNDLE_LIMITS, recordingSink().sink),
    ).rejects.toThrow();
  });

  test("refuses a tar gzip'd twice instead of gunzipping it again (node-tar would)", async () => {
    const { sink, seen } = recordingSink();
    const walk = walkArchive(fromBytes(gzip(gzip(tarBytes([{ path: 'a', body: 'a' }])))), DEFAULT_BUNDLE_LIMITS, sink);
    await expect(walk).rejects.toThrow(UnsafeBundle);
    await expect(walk).rejects.toThrow('the archive inside the gzip is compressed again');
    expect(seen).toEqual([]);
  });

  test('refuses a gzip bomb after ~maxRatio × the chunk being inflated, not counting what waits in the gunzip', async (ctx) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-walk-bomb-'));
    ctx.onTestFinished(() => fs.rm(dir, { recursive: true, force: true }));
    const bomb = await gzipBombFile(path.join(dir, 'bomb.tar.gz'), 256 * 1024 ** 2);
    let handed = 0;
    const counting: ArchiveSink = {
      directory() {},
      file: () => ({
        write: (c) => {
          handed += c.length;
        },
        end() {},
      }),
    };
    // 16 KiB chunks: node-tar refused after ~200 × 16 KiB; bytes written ahead of the inflate
    // (up to 256 KiB) counted too would let ~50 MiB through first.
    const walk = walkArchive(createReadStream(bomb.file, { highWaterMark: 16 * 1024 }), DEFAULT_BUNDLE_LIMITS, counting);
    await expect(walk).rejects.toThrow(/max decompression ratio exceeded/);
    expect(handed).toBeLessThan(8 * 1024 * 1024);
  });

  test('asks its writer to wait while the gunzip is behind, and releases a waiting writer when it fails', async () => {
    const archive = gzip(tarBytes([{ path: 'big.bin', body: noise(4 * 1024 * 1024) }]));
    const finished = startArchiveWalk(DEFAULT_BUNDLE_LIMITS, recordingSink().sink);
    const wait = finished.write(archive); // the whole archive at once: more than the walk buffers ahead
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    finished.end();
    expect((await finished.result).counts).toEqual({ files: 1, directories: 0, bytes: 4 * 1024 * 1024 });

    const failed = startArchiveWalk(DEFAULT_BUNDLE_LIMITS, recordingSink().sink);
    failed.result.catch(() => {});
    const waiting = failed.write(archive);
    failed.fail(new Error('the source failed'));
    await expect(waiting).resolves.toBeUndefined(); // released, not left hanging
    await expect(failed.result).rejects.toThrow('the source failed');
    expect(failed.write(archive)).toBeUndefined(); // a settled walk takes nothing more
  });
});

describe('the tree digest from the walk', () => {
  test('equals the digest of the tree unpacking writes, computed from the files on disk', async (ctx) => {
    const dir = await scratch(ctx);
    const archive = path.join(dir, 'bundle.tar.gz');
    await fs.writeFile(archive, gzip(tarBytes(FIXTURE)));
    const walked = await walkArchive(createReadStream(archive), DEFAULT_BUNDLE_LIMITS, recordingSink().sink, { treeDigest: true });
    await unpackBundle(archive, path.join(dir, 'workflow'));
    expect(walked.treeDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(walked.treeDigest).toBe(digestOnDisk(path.join(dir, 'workflow')));
  });

  test('does not depend on entry order, explicit or implied directories, archive modes beyond the execute bits, or compression', async () => {
    const base = await walkedDigest(gzip(tarBytes(FIXTURE)));
    const reordered = [...FIXTURE].reverse().filter((e) => e.path !== 'bin/');
    expect(await walkedDigest(zlib.gzipSync(tarBytes(reordered), { level: 9 }))).toBe(base);
    expect(await walkedDigest(gzip(tarBytes(FIXTURE.map((e) => (e.path === 'bin/run' ? { ...e, mode: 0o711 } : e)))))).toBe(base);
  });

  test('changes with a byte of content, an execute bit, a name or an empty directory', async () => {
    const base = await walkedDigest(gzip(tarBytes(FIXTURE)));
    const changed = (path: string, change: Partial<TarEntry>) => FIXTURE.map((e) => (e.path === path ? { ...e, ...change } : e));
    const variants = [
      changed('swarm.json', { body: '{"entrypoint":["./bin/runs"]}' }),
      changed('bin/run', { mode: 0o644 }),
      changed('empty', { path: 'empty2' }),
      FIXTURE.filter((e) => e.path !== 'z-last/'),
    ];
    const digests = await Promise.all(variants.map((entries) => walkedDigest(gzip(tarBytes(entries)))));
    expect(new Set([base, ...digests]).size).toBe(1 + variants.length);
  });
});

describe('treeDigest', () => {
  test('is the sha256 of the documented canonical encoding (version 1)', () => {
    const entries: TreeEntry[] = [
      { type: 'file', path: 'b', mode: 0o755, size: 2, sha256: sha256('hi') },
      { type: 'dir', path: 'a' },
      { type: 'file', path: 'a/x', mode: 0o644, size: 0, sha256: sha256('') },
    ];
    const encoding = `swarm-tree-v1\ndir 755 0 - a\0file 644 0 ${sha256('')} a/x\0file 755 2 ${sha256('hi')} b\0`;
    expect(treeDigest(entries)).toBe(sha256(encoding));
  });

  test('sorts paths by their UTF-8 bytes, not by UTF-16 code units', () => {
    // U+FF5E sorts after U+1F600 in UTF-16 (0xFF5E > 0xD83D) but before it in UTF-8 (EF… < F0…).
    const a = { type: 'dir', path: '\uff5e' } as const;
    const b = { type: 'dir', path: '\u{1f600}' } as const;
    expect(treeDigest([b, a])).toBe(sha256(`swarm-tree-v1\ndir 755 0 - \uff5e\0dir 755 0 - \u{1f600}\0`));
  });
});
