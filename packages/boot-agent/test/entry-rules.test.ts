/**
 * The bundle rules in-process, entry by entry (node-tar's style: each path helper and each
 * refusal its own case). hostile.test.ts proves the same refusals end to end, through the
 * real agent; these pin down each rule on its own, with no archive and no process.
 */
import { describe, expect, test } from 'vitest';
import {
  type ArchiveEntry,
  type BundleLimits,
  DEFAULT_BUNDLE_LIMITS,
  EntryRules,
  UnsafeBundle,
  ancestors,
  safeRelativePath,
  unpackedMode,
} from '@swarm/sdk/bundle-rules';

const file = (path: string, size = 1, mode = 0o644): ArchiveEntry => ({ path, type: 'File', size, mode });
const dir = (path: string): ArchiveEntry => ({ path, type: 'Directory', mode: 0o755 });

/** Checks `entries` in order with fresh rules; returns the rules, or throws the first refusal. */
function checkAll(entries: ArchiveEntry[], limits: Partial<BundleLimits> = {}): EntryRules {
  const rules = new EntryRules({ ...DEFAULT_BUNDLE_LIMITS, ...limits });
  for (const e of entries) rules.check(e);
  return rules;
}

const refusal = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UnsafeBundle);
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
};

describe('safeRelativePath', () => {
  test('normalises "./", empty and "." segments and a trailing slash', () => {
    expect(safeRelativePath('./a//b/./c/', 64)).toBe('a/b/c');
  });
  test('the bundle root is ""', () => {
    expect(safeRelativePath('./', 64)).toBe('');
    expect(safeRelativePath('.', 64)).toBe('');
  });
  test('keeps names that only look like dots', () => {
    expect(safeRelativePath('a/..b/c..', 64)).toBe('a/..b/c..');
  });
  test('refuses a NUL in the path, showing it escaped', () => {
    expect(refusal(() => safeRelativePath('a\0b', 64))).toBe('entry "a\\0b" has a NUL in its path');
  });
  test('refuses an absolute path', () => {
    expect(refusal(() => safeRelativePath('/etc/passwd', 64))).toBe('entry "/etc/passwd" has an absolute path');
  });
  test('refuses ".." at the start', () => {
    expect(refusal(() => safeRelativePath('../x', 64))).toBe('entry "../x" climbs out with ".."');
  });
  test('refuses ".." in the middle, even one that would stay inside', () => {
    expect(refusal(() => safeRelativePath('a/../b', 64))).toBe('entry "a/../b" climbs out with ".."');
  });
  test('accepts exactly maxDepth levels', () => {
    expect(safeRelativePath('a/b/c', 3)).toBe('a/b/c');
  });
  test('accepts a 255-byte name and a 4,095-byte path', () => {
    const name = `${'é'.repeat(127)}x`; // 255 bytes in UTF-8
    expect(safeRelativePath(name, 64)).toBe(name);
    const path = Array.from({ length: 16 }, () => 'a'.repeat(255))
      .join('/')
      .slice(0, 4095);
    expect(safeRelativePath(path, 64)).toBe(path);
  });
  test('refuses a name longer than 255 bytes (counted in UTF-8)', () => {
    expect(refusal(() => safeRelativePath(`d/${'é'.repeat(128)}`, 64))).toMatch(/has a name longer than 255 bytes$/);
  });
  test('refuses a path longer than 4,095 bytes', () => {
    const path = Array.from({ length: 17 }, () => 'a'.repeat(250)).join('/');
    expect(refusal(() => safeRelativePath(path, 64))).toMatch(/has a path longer than 4095 bytes$/);
  });
  test('refuses one level more than maxDepth', () => {
    expect(refusal(() => safeRelativePath('a/b/c/d', 3))).toBe('entry "a/b/c/d…" is nested deeper than 3 levels');
  });
});

describe('ancestors', () => {
  test('lists every proper ancestor, outermost first', () => {
    expect([...ancestors('a/b/c')]).toEqual(['a', 'a/b']);
  });
  test('a top-level name has none', () => {
    expect([...ancestors('a')]).toEqual([]);
  });
});

describe('unpackedMode', () => {
  test('a file without execute bits is 0644', () => {
    expect(unpackedMode(0o600)).toBe(0o644);
  });
  test('any execute bit makes it 0755', () => {
    expect(unpackedMode(0o700)).toBe(0o755);
    expect(unpackedMode(0o601)).toBe(0o755);
  });
  test('setuid, setgid and sticky bits are dropped', () => {
    expect(unpackedMode(0o7755)).toBe(0o755);
    expect(unpackedMode(0o4644)).toBe(0o644);
  });
  test('no mode at all is 0644', () => {
    expect(unpackedMode(undefined)).toBe(0o644);
  });
});

describe('EntryRules', () => {
  test('a file: its relative path, unpacked mode and size; counted and listed with its implied directories', () => {
    const rules = new EntryRules(DEFAULT_BUNDLE_LIMITS);
    expect(rules.check(file('./app/bin/run', 5, 0o4775))).toEqual({
      type: 'file',
      path: './app/bin/run',
      rel: 'app/bin/run',
      mode: 0o755,
      size: 5,
    });
    expect(rules.counts).toEqual({ files: 1, directories: 0, bytes: 5 });
    expect(rules.listing.files).toEqual(new Map([['app/bin/run', 0o755]]));
    expect(rules.listing.dirs).toEqual(new Set(['app/bin', 'app']));
  });
  test('a directory: its relative path, counted and listed', () => {
    const rules = new EntryRules(DEFAULT_BUNDLE_LIMITS);
    expect(rules.check(dir('lib/'))).toEqual({ type: 'dir', path: 'lib/', rel: 'lib' });
    expect(rules.counts).toEqual({ files: 0, directories: 1, bytes: 0 });
    expect(rules.listing.dirs).toEqual(new Set(['lib']));
  });
  test('a directory entry after a file inside it is fine (implied, then explicit)', () => {
    expect(checkAll([file('a/b'), dir('a/')]).listing.dirs).toEqual(new Set(['a']));
  });
  test('old-style and contiguous files are regular files', () => {
    expect(
      checkAll([
        { path: 'x', type: 'OldFile', size: 0 },
        { path: 'y', type: 'ContiguousFile', size: 0 },
      ]).counts.files,
    ).toBe(2);
  });
  test('a file with no size counts 0 bytes', () => {
    expect(checkAll([{ path: 'x', type: 'File' }]).counts.bytes).toBe(0);
  });
  test('the path checks apply to every entry', () => {
    expect(refusal(() => checkAll([file('../x')]))).toBe('entry "../x" climbs out with ".."');
  });

  for (const type of ['SymbolicLink', 'Link', 'CharacterDevice', 'BlockDevice', 'FIFO']) {
    test(`refuses a ${type}`, () => {
      expect(refusal(() => checkAll([{ path: 'x', type }]))).toBe(
        `entry "x" is a ${type}; bundles may hold only regular files and directories`,
      );
    });
  }
  test('refuses a file naming the bundle root', () => {
    expect(refusal(() => checkAll([file('./')]))).toBe('a file entry names the bundle root');
  });
  test('refuses the same file twice', () => {
    expect(refusal(() => checkAll([file('a'), file('./a')]))).toBe('entry "./a" appears twice');
  });
  test('refuses a file where a directory was', () => {
    expect(refusal(() => checkAll([dir('a/'), file('a')]))).toBe('entry "a" conflicts with another entry');
  });
  test('refuses a file where a directory was implied', () => {
    expect(refusal(() => checkAll([file('a/b'), file('a')]))).toBe('entry "a" conflicts with another entry');
  });
  test('refuses a directory where a file was', () => {
    expect(refusal(() => checkAll([file('a'), dir('a/')]))).toBe('entry "a/" conflicts with another entry');
  });
  test('refuses a file below a file', () => {
    expect(refusal(() => checkAll([file('a'), file('a/b/c')]))).toBe('entry "a/b/c" conflicts with another entry');
  });
  test('accepts exactly maxEntries entries', () => {
    expect(checkAll([dir('a/'), file('a/b')], { maxEntries: 2 }).counts).toMatchObject({ files: 1, directories: 1 });
  });
  test('refuses one entry more than maxEntries', () => {
    expect(refusal(() => checkAll([dir('a/'), file('a/b'), file('c')], { maxEntries: 2 }))).toBe('more than 2 entries');
  });
  test('accepts exactly maxBytes unpacked bytes', () => {
    expect(checkAll([file('a', 60), file('b', 40)], { maxBytes: 100 }).counts.bytes).toBe(100);
  });
  test('refuses one byte more than maxBytes, counted over all files', () => {
    expect(refusal(() => checkAll([file('a', 60), file('b', 41)], { maxBytes: 100 }))).toBe('unpacked size exceeds 100 bytes');
  });
});
