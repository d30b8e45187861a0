/**
 * Reproducible bundles: the packer's bytes (gzip and tar headers inspected directly),
 * the same hash from two different checkouts of one tree, .swarmignore, the refusal of
 * secret files and of symlinks that cannot be packed, and `swarm pack` / `swarm hash` /
 * `swarm push` against a registry on the real PostgreSQL and S3 server.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GZIP_LEVEL, packBundle, packDirectory, scanBundle } from '../packages/sdk/src/pack.js';
import { writeTree } from './support/bundles.js';
import { swarm } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// fflate is the SDK's dependency, not the root's: load it from there.
type FflateGzip = new (
  o: { level: number; mtime: number },
  ondata: (chunk: Uint8Array) => void,
) => { push(chunk: Uint8Array, final?: boolean): void };
const { Gzip } = createRequire(path.join(repoRoot, 'packages/sdk/package.json'))('fflate') as { Gzip: FflateGzip };

let work: string;
beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-pack-'));
});
afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

let n = 0;
const dirFor = (name: string) => path.join(work, `${name}-${++n}`);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function packBytes(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of packDirectory(dir, await scanBundle(dir))) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

type TarHeader = {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: string;
  uname: string;
  gname: string;
  /** For a pax header ('x'): its records. */
  pax?: Record<string, string>;
};

/** Reads every header block of an uncompressed tar, pax headers included (their path applies to the next entry). */
function tarHeaders(tar: Buffer): TarHeader[] {
  let paxPath: string | undefined;
  const str = (off: number, len: number) => tar.toString('utf8', off, off + len).replace(/\0.*$/s, '');
  // Empty (all NUL) numeric fields read as 0, as GNU tar and node-tar read them.
  const num = (off: number, len: number) => parseInt(str(off, len).trim() || '0', 8);
  const headers: TarHeader[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    if (tar.subarray(off, off + 512).every((b) => b === 0)) break;
    const prefix = str(off + 345, 155);
    const h: TarHeader = {
      name: prefix ? `${prefix}/${str(off, 100)}` : str(off, 100),
      mode: num(off + 100, 8),
      uid: num(off + 108, 8),
      gid: num(off + 116, 8),
      size: num(off + 124, 12),
      mtime: num(off + 136, 12),
      type: String.fromCharCode(tar[off + 156]!),
      uname: str(off + 265, 32),
      gname: str(off + 297, 32),
    };
    if (h.type === 'x' || h.type === 'g') {
      const body = tar.toString('utf8', off + 512, off + 512 + h.size);
      h.pax = Object.fromEntries([...body.matchAll(/^\d+ ([^=]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
      paxPath = h.pax.path;
    } else if (paxPath !== undefined) {
      h.name = paxPath;
      paxPath = undefined;
    }
    headers.push(h);
    off += 512 + Math.ceil(h.size / 512) * 512;
  }
  return headers;
}

describe('bundle bytes', () => {
  const longName = `${'n'.repeat(120)}.txt`;
  let dir: string;
  let bytes: Buffer;
  beforeAll(async () => {
    dir = await writeTree(dirFor('bytes'), {
      'b.txt': { text: 'b\n', mode: 0o600 },
      'a/run.sh': { text: '#!/bin/sh\n', mode: 0o700 },
      'a.txt': { text: 'a\n', mode: 0o664 },
      [longName]: 'long name: needs a pax header',
      'ünï.txt': 'a non-ASCII name: needs a pax header',
      'big.bin': Buffer.alloc(200_000, 'xyz').toString(),
    });
    await fs.chmod(path.join(dir, 'a'), 0o700);
    bytes = await packBytes(dir);
  });

  it('has a gzip header without name or time, and the fixed level', () => {
    expect(bytes.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 8])); // gzip, deflate
    expect(bytes[3]).toBe(0); // FLG: no name, comment or extra field
    expect(bytes.readUInt32LE(4)).toBe(0); // MTIME
    expect(bytes[8]).toBe(0); // XFL: neither fastest nor best, i.e. a middle level
    expect(bytes[9]).toBe(3); // OS: always Unix, whatever the machine
  });

  it('is exactly fflate at level 6 over 64 KiB blocks of the tar, so no zlib build can change it', () => {
    const tar = gunzipSync(bytes);
    const out: Uint8Array[] = [];
    const gzip = new Gzip({ level: GZIP_LEVEL, mtime: 0 }, (c) => out.push(c));
    for (let i = 0; i < tar.length; i += 65536) gzip.push(tar.subarray(i, i + 65536), i + 65536 >= tar.length);
    expect(GZIP_LEVEL).toBe(6);
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
  });

  it('has tar headers with no owner and no time, modes 0644/0755, sorted paths, and pax headers without times', () => {
    const headers = tarHeaders(gunzipSync(bytes));
    const entries = headers.filter((h) => h.type !== 'x');
    expect(entries.map((h) => h.name)).toEqual(['a.txt', 'a/', 'a/run.sh', 'b.txt', 'big.bin', longName, 'ünï.txt']);
    for (const h of headers) {
      expect(h, h.name).toMatchObject({ uid: 0, gid: 0, uname: '', gname: '', mtime: 0 });
    }
    expect(Object.fromEntries(entries.map((h) => [h.name, h.mode.toString(8)]))).toEqual({
      'a.txt': '644',
      'a/': '755',
      'a/run.sh': '755',
      'b.txt': '644',
      'big.bin': '644',
      [longName]: '644',
      'ünï.txt': '644',
    });
    const pax = headers.filter((h) => h.type === 'x');
    expect(pax.length).toBe(2);
    for (const h of pax)
      expect(
        Object.keys(h.pax!).every((k) => ['path', 'size', 'linkpath'].includes(k)),
        Object.keys(h.pax!).join(),
      ).toBe(true);
  });

  it('stores hard links as plain files: the same bytes as a tree of copies', async () => {
    const linked = await writeTree(dirFor('hardlinks'), { 'one.txt': 'same\n' });
    await fs.link(path.join(linked, 'one.txt'), path.join(linked, 'two.txt'));
    const copied = await writeTree(dirFor('copies'), { 'one.txt': 'same\n', 'two.txt': 'same\n' });
    const b = await packBytes(linked);
    expect(tarHeaders(gunzipSync(b)).map((h) => h.type)).toEqual(['0', '0']);
    expect(b.equals(await packBytes(copied))).toBe(true);
  });

  it('stores a symlink to a file inside the tree as that file', async () => {
    const withLink = await writeTree(dirFor('link'), { 'lib/real.js': 'x\n', 'alias.js': { link: 'lib/real.js' } });
    const withCopy = await writeTree(dirFor('copy'), { 'lib/real.js': 'x\n', 'alias.js': 'x\n' });
    expect((await packBytes(withLink)).equals(await packBytes(withCopy))).toBe(true);
  });

  it('packs any tree to the same bytes whatever its creation order, times and permissions (property)', async () => {
    const segment = fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
    const file = fc.record({
      dirs: fc.array(
        segment.map((s) => `d${s}`),
        { maxLength: 3 },
      ),
      name: segment.map((s) => `f${s}`),
      text: fc.string({ maxLength: 300 }),
      exec: fc.boolean(),
    });
    const variant = fc.record({
      order: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
      mtime: fc.integer({ min: 0, max: 2_000_000_000 }),
      fileMode: fc.constantFrom(0o600, 0o640, 0o644, 0o664),
      execMode: fc.constantFrom(0o700, 0o750, 0o755, 0o775),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(file, { minLength: 1, maxLength: 12, selector: (f) => [...f.dirs, f.name].join('/') }),
        variant,
        async (files, v) => {
          const a = dirFor('prop-a');
          const b = dirFor('prop-b');
          await writeTree(
            a,
            Object.fromEntries(files.map((f) => [[...f.dirs, f.name].join('/'), { text: f.text, mode: f.exec ? 0o755 : 0o644 }])),
          );
          const shuffled = files
            .map((f, i) => ({ f, key: v.order[i % v.order.length]! * 31 + i }))
            .sort((x, y) => x.key - y.key)
            .map((x) => x.f);
          await writeTree(
            b,
            Object.fromEntries(
              shuffled.map((f) => [[...f.dirs, f.name].join('/'), { text: f.text, mode: f.exec ? v.execMode : v.fileMode }]),
            ),
          );
          for (const f of files) await fs.utimes(path.join(b, ...f.dirs, f.name), v.mtime, v.mtime);
          const [pa, pb] = [await packBytes(a), await packBytes(b)];
          await Promise.all([fs.rm(a, { recursive: true }), fs.rm(b, { recursive: true })]);
          return pa.equals(pb);
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('two different checkouts of the same tree', () => {
  it('give the same hash from `swarm hash` and the same bytes from `swarm pack`', async () => {
    const origin = await writeTree(dirFor('origin'), {
      'index.js': 'console.log("hi")\n',
      'bin/run': { text: '#!/bin/sh\necho run\n', mode: 0o755 },
      'lib/deep/util.js': 'export const x = 1;\n',
      '.swarmignore': 'notes/\n',
      'notes/todo.md': 'not packed\n',
    });
    const git = (args: string[], cwd = origin) =>
      run('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', '-c', 'init.defaultBranch=main', ...args], { cwd });
    await git(['init', '-q']);
    await git(['add', '-A']);
    await git(['commit', '-qm', 'tree']);
    const one = dirFor('checkout-one');
    const two = dirFor('checkout-two');
    await git(['clone', '-q', origin, one], work);
    // The second checkout: another umask (files 0600, 0700), other times, another owner.
    await run('sh', ['-c', 'umask 077 && git clone -q "$0" "$1"', origin, two]);
    expect((await fs.stat(path.join(two, 'index.js'))).mode & 0o777).toBe(0o600);
    for (const f of ['index.js', 'bin/run', 'lib/deep/util.js']) await fs.utimes(path.join(two, f), 1_000_000, 1_000_000);
    await run('chown', ['-R', '65534:65534', two]);
    expect((await fs.stat(path.join(two, 'index.js'))).uid).toBe(65534);

    const [h1, h2] = await Promise.all([swarm(['hash', one], {}), swarm(['hash', two], {})]);
    expect(h1.code, h1.stderr).toBe(0);
    expect(h1.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    expect(h2.stdout).toBe(h1.stdout);

    const out1 = path.join(work, 'one.tar.gz');
    const out2 = path.join(work, 'two.tar.gz');
    const [p1, p2] = await Promise.all([swarm(['pack', one, '-o', out1, '--json'], {}), swarm(['pack', two, '-o', out2, '--json'], {})]);
    expect(p1.code, p1.stderr).toBe(0);
    expect(p2.code, p2.stderr).toBe(0);
    const [b1, b2] = [await fs.readFile(out1), await fs.readFile(out2)];
    expect(b1.equals(b2)).toBe(true);
    expect(sha256(b1)).toBe(h1.stdout.trim());
    expect(JSON.parse(p1.stdout)).toEqual({ file: out1, hash: sha256(b1), size: b1.length, files: 3, directories: 3 });
    // .git and what .swarmignore names stay out, and .swarmignore itself too.
    expect(tarHeaders(gunzipSync(b1)).map((h) => h.name)).toEqual(['bin/', 'bin/run', 'index.js', 'lib/', 'lib/deep/', 'lib/deep/util.js']);
  });
});

const paths = async (dir: string) => (await scanBundle(dir)).map((e) => e.path);

describe('.swarmignore', () => {
  it('always leaves out .git, .hg, .svn and node_modules/.cache, even when told otherwise', async () => {
    const dir = await writeTree(dirFor('defaults'), {
      'index.js': 'x',
      '.git/HEAD': 'ref',
      '.hg/store': 'x',
      'sub/.svn/entries': 'x',
      'node_modules/.cache/big': 'x',
      'node_modules/dep/index.js': 'x',
      'pkg/node_modules/.cache/x': 'x',
      '.swarmignore': '!.git\n!.git/HEAD\n!node_modules/.cache\n',
    });
    expect(await paths(dir)).toEqual([
      'index.js',
      'node_modules',
      'node_modules/dep',
      'node_modules/dep/index.js',
      'pkg',
      'pkg/node_modules',
      'sub',
    ]);
  });

  it('follows gitignore syntax: globs, directory-only patterns, anchoring, ** and negation', async () => {
    const dir = await writeTree(dirFor('patterns'), {
      '.swarmignore': ['# comment', '*.log', '!keep.log', 'build/', '/top.txt', 'docs/**/*.md', 'tmp'].join('\n'),
      'a.log': 'x',
      'keep.log': 'x',
      'sub/b.log': 'x',
      'build/out.js': 'x',
      'src/build': 'a file named build: "build/" matches only directories',
      'top.txt': 'x',
      'src/top.txt': 'not anchored: kept',
      'docs/a/b/c.md': 'x',
      'docs/a/keep.txt': 'x',
      'tmp/x': 'x',
      'src/tmp': 'x',
    });
    expect(await paths(dir)).toEqual([
      'docs',
      'docs/a',
      'docs/a/b',
      'docs/a/keep.txt',
      'keep.log',
      'src',
      'src/build',
      'src/top.txt',
      'sub',
    ]);
  });

  it('cannot re-include a file inside an excluded directory, as in git', async () => {
    const dir = await writeTree(dirFor('reinclude'), {
      '.swarmignore': 'cache/\n!cache/keep.txt\n',
      'cache/keep.txt': 'x',
      'index.js': 'x',
    });
    expect(await paths(dir)).toEqual(['index.js']);
  });

  it('is not packed itself: editing only a comment in it keeps the hash', async () => {
    const dir = await writeTree(dirFor('comment'), { '.swarmignore': '# v1\n*.log\n', 'index.js': 'x', 'a.log': 'x' });
    const before = await packBundle(dir);
    await fs.writeFile(path.join(dir, '.swarmignore'), '# v2, reworded\n*.log\n');
    expect((await packBundle(dir)).hash).toBe(before.hash);
    expect(await paths(dir)).toEqual(['index.js']);
  });
});

describe('secret files', () => {
  const cases: Array<[string, string, string]> = [
    ['.env', 'API_KEY=1', 'matches .env'],
    ['config/.env.production', 'API_KEY=1', 'matches .env.*'],
    ['certs/server.pem', 'certificate', 'matches *.pem'],
    ['tls.key', 'x', 'matches *.key'],
    ['store.p12', 'x', 'matches *.p12'],
    ['store.pfx', 'x', 'matches *.pfx'],
    ['app.jks', 'x', 'matches *.jks'],
    ['release.keystore', 'x', 'matches *.keystore'],
    ['putty.ppk', 'x', 'matches *.ppk'],
    ['deploy/id_rsa', 'x', 'matches id_rsa'],
    ['id_ed25519', 'x', 'matches id_ed25519'],
    ['.aws/credentials', '[default]', 'matches **/.aws/credentials'],
    ['home/.config/gcloud/application_default_credentials.json', '{}', 'matches application_default_credentials.json'],
    ['.docker/config.json', '{}', 'matches **/.docker/config.json'],
    ['.kube/config', 'x', 'matches **/.kube/config'],
    ['.netrc', 'machine x', 'matches .netrc'],
    ['.pgpass', 'x', 'matches .pgpass'],
    ['.git-credentials', 'x', 'matches .git-credentials'],
    ['config/service-account.json', '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE"}', 'holds a private key'],
    ['notes.txt', 'hello\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n', 'holds a private key'],
    ['.npmrc', '//registry.npmjs.org/:_authToken=npm_abcdef\n', 'holds an npm auth token'],
  ];
  it.each(cases)('refuses %s by name', async (file, text, reason) => {
    const dir = await writeTree(dirFor('secret'), { 'index.js': 'x', [file]: text });
    await expect(scanBundle(dir)).rejects.toThrow(`refusing to pack a file that looks like a secret: ${file} (${reason})`);
    await expect(scanBundle(dir, { allowSecretFiles: true })).resolves.toContainEqual(expect.objectContaining({ path: file }));
  });

  it('accepts what only looks close: .env templates, public keys, certificates, an .npmrc without a token', async () => {
    const dir = await writeTree(dirFor('lookalikes'), {
      '.env.example': 'API_KEY=',
      '.env.sample': 'API_KEY=',
      'id_rsa.pub': 'ssh-rsa AAAA',
      'ca.crt': '-----BEGIN CERTIFICATE-----\n',
      '.npmrc': 'registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n',
      'environment.js': 'x',
    });
    expect(await paths(dir)).toEqual(['.env.example', '.env.sample', '.npmrc', 'ca.crt', 'environment.js', 'id_rsa.pub']);
  });

  it('names every file (the first 20, then how many more) and says where secrets go instead', async () => {
    const files = Object.fromEntries(Array.from({ length: 23 }, (_, i) => [`keys/k${String(i).padStart(2, '0')}.pem`, 'x']));
    const dir = await writeTree(dirFor('many'), { 'index.js': 'x', ...files });
    const err = (await scanBundle(dir).catch((e: unknown) => e)) as { message: string; hint: string };
    expect(err.message).toMatch(
      /^refusing to pack 23 files that look like secrets: keys\/k00\.pem \(matches \*\.pem\), .*keys\/k19\.pem \(matches \*\.pem\) and 3 more$/,
    );
    expect(err.message).not.toContain('k20');
    expect(err.hint).toMatch(/swarm spawn --secret KEY=VALUE.*\.swarmignore.*--allow-secret-files/);
  });

  it('accepts secret files excluded in .swarmignore, and refuses one a negation brings back', async () => {
    const dir = await writeTree(dirFor('excluded'), {
      'index.js': 'x',
      '.env': 'A=1',
      '.env.local': 'A=1',
      'key.pem': 'x',
      '.swarmignore': '.env*\n*.pem\n',
    });
    expect(await paths(dir)).toEqual(['index.js']);
    await fs.writeFile(path.join(dir, '.swarmignore'), '.env*\n!.env.local\n*.pem\n');
    await expect(scanBundle(dir)).rejects.toThrow(/^refusing to pack a file that looks like a secret: \.env\.local \(matches \.env\.\*\)$/);
  });

  it('refuses a harmless-looking symlink to a secret file', async () => {
    const dir = await writeTree(dirFor('link-to-secret'), {
      'index.js': 'x',
      'config.txt': { link: '.env' },
      '.env': 'A=1',
      '.swarmignore': '.env\n',
    });
    await expect(scanBundle(dir)).rejects.toThrow('refusing to pack a file that looks like a secret: config.txt (matches .env)');
  });
});

describe('symlinks and other entries that cannot be packed', () => {
  it('refuses a link leading outside the tree', async () => {
    const dir = await writeTree(dirFor('outside'), { 'index.js': 'x', passwd: { link: '/etc/passwd' } });
    await expect(scanBundle(dir)).rejects.toThrow('symlink passwd points outside the bundle directory (to /etc/passwd)');
  });

  it('refuses a link that climbs out with ..', async () => {
    const dir = await writeTree(dirFor('climb'), { 'index.js': 'x', 'up.js': { link: '../neighbour.js' } });
    await fs.writeFile(path.join(dir, '../neighbour.js'), 'a file beside the tree');
    await expect(scanBundle(dir)).rejects.toThrow('symlink up.js points outside the bundle directory (to ../neighbour.js)');
  });

  it('refuses a dangling link', async () => {
    const dir = await writeTree(dirFor('dangling'), { 'index.js': 'x', 'gone.js': { link: 'missing.js' } });
    await expect(scanBundle(dir)).rejects.toThrow('symlink gone.js points to missing.js, which does not exist');
  });

  it('refuses a loop of links', async () => {
    const dir = await writeTree(dirFor('loop'), { 'index.js': 'x', a: { link: 'b' }, b: { link: 'a' } });
    await expect(scanBundle(dir)).rejects.toThrow('symlink a is a loop of symlinks');
  });

  it('refuses a link to a directory inside the tree, unless .swarmignore excludes it', async () => {
    const dir = await writeTree(dirFor('dirlink'), { 'lib/x.js': 'x', current: { link: 'lib' } });
    await expect(scanBundle(dir)).rejects.toThrow('symlink current points to a directory; only links to files are packed');
    await fs.writeFile(path.join(dir, '.swarmignore'), 'current/\n');
    expect(await paths(dir)).toEqual(['lib', 'lib/x.js']);
  });

  it('refuses a FIFO', async () => {
    const dir = await writeTree(dirFor('fifo'), { 'index.js': 'x' });
    await run('mkfifo', [path.join(dir, 'pipe')]);
    await expect(scanBundle(dir)).rejects.toThrow('pipe is not a regular file or directory');
  });
});

describe('bad inputs to the packer', () => {
  it('refuses a directory that does not exist', async () => {
    await expect(scanBundle(path.join(work, 'nope'))).rejects.toThrow(/nope does not exist$/);
  });

  it('refuses a file where a directory is expected', async () => {
    const dir = await writeTree(dirFor('file'), { 'a.txt': 'x' });
    await expect(scanBundle(path.join(dir, 'a.txt'))).rejects.toThrow(/a\.txt is not a directory$/);
  });

  it('refuses an empty directory', async () => {
    const dir = dirFor('empty');
    await fs.mkdir(path.join(dir, 'only/dirs'), { recursive: true });
    await expect(scanBundle(dir)).rejects.toThrow(/^nothing to pack: .* has no files$/);
  });

  it('refuses a directory whose every file is excluded, saying so', async () => {
    const dir = await writeTree(dirFor('all-ignored'), { '.swarmignore': '*\n', 'a.js': 'x', '.git/HEAD': 'x' });
    await expect(scanBundle(dir)).rejects.toThrow(
      /^nothing to pack: .* has no files \(\.swarmignore and the defaults exclude 3 entries\)$/,
    );
  });

  it('writes nothing when the output directory does not exist', async () => {
    const dir = await writeTree(dirFor('src'), { 'a.js': 'x' });
    const out = path.join(work, 'no-such-dir', 'b.tar.gz');
    await expect(packBundle(dir, { out })).rejects.toThrow(`cannot write ${out}: directory ${path.dirname(out)} does not exist`);
  });

  it('leaves no partial file when packing fails', async () => {
    const dir = await writeTree(dirFor('fails'), { 'a.js': 'x', '.env': 'A=1' });
    const outDir = dirFor('outdir');
    await fs.mkdir(outDir);
    await expect(packBundle(dir, { out: path.join(outDir, 'b.tar.gz') })).rejects.toThrow(/looks like a secret/);
    expect(await fs.readdir(outDir)).toEqual([]);
  });
});

describe('swarm pack, hash and push against a registry', () => {
  let reg: TestRegistry;
  let env: Record<string, string>;
  let app: string;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3' });
    env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken };
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'app' }));
    app = await writeTree(dirFor('app'), {
      'index.js': 'console.log(1)\n',
      'lib/u.js': 'export {}\n',
      // Compressible only about 2:1: every upload is checked against the agent's decompression-ratio cap.
      'data.bin': randomBytes(150_000).toString('hex'),
    });
  });
  afterAll(() => reg?.close());

  async function storeState() {
    const objects: string[] = [];
    for await (const o of reg.deps.store.driver.list('')) objects.push(`${o.key} ${o.size}`);
    const c = reg.client();
    const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow: 'acme/app' }));
    return { objects: objects.sort(), versions: versions.map((v) => v.version) };
  }

  it('pushes a tree once; pushing it unchanged again creates no version and uploads nothing', async () => {
    const first = await swarm(['push', app, '-w', 'acme/app', '--activate'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^pushed version 1 of acme\/app /);
    // Not a terminal: plain progress lines, one per phase at least.
    expect(first.stderr).toMatch(/^packing done: .* in \d+\.\d s \(.*\/s\)$/m);
    expect(first.stderr).toMatch(/^hashing done: /m);
    expect(first.stderr).toMatch(/^uploading done: /m);
    const after = await storeState();
    expect(after.versions).toEqual([1]);
    expect(after.objects.filter((o) => o.startsWith('blobs/'))).toHaveLength(1);

    const again = await swarm(['push', app, '-w', 'acme/app'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^unchanged: version 1 already has this bundle of acme\/app .*already stored, nothing uploaded/);
    expect(again.stderr).toMatch(/^hashing done: /m);
    expect(again.stderr).not.toContain('uploading');
    expect(await storeState()).toEqual(after);
  });

  it('prints nothing but the JSON document with --json', async () => {
    const r = await swarm(['push', app, '-w', 'acme/app', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ version: 1, created: false });
  });

  it('registers the hash `swarm hash` and `swarm pack` print for the tree', async () => {
    const out = path.join(work, 'app.tar.gz');
    const [hash, pack, hashJson] = await Promise.all([
      swarm(['hash', app], {}),
      swarm(['pack', app, '-o', out], {}),
      swarm(['hash', app, '--json'], {}),
    ]);
    expect(hash.code, hash.stderr).toBe(0);
    const c = reg.client();
    const [v1] = await c.call(() => c.trpc.workflows.versions.query({ workflow: 'acme/app' }));
    expect(hash.stdout).toBe(`${v1!.bundleHash}\n`);
    expect(pack.stdout).toMatch(
      new RegExp(`^packed 3 files and 1 directory of .* into .*app\\.tar\\.gz \\(.*\\)\\nsha256:${v1!.bundleHash}\\n$`),
    );
    expect(sha256(await fs.readFile(out))).toBe(v1!.bundleHash);
    expect(JSON.parse(hashJson.stdout)).toEqual({
      path: app,
      kind: 'directory',
      hash: v1!.bundleHash,
      size: v1!.size,
      files: 3,
      directories: 1,
    });
    expect(hashJson.stderr).toBe('');
    const ofFile = await swarm(['hash', out, '--json'], {});
    expect(JSON.parse(ofFile.stdout)).toEqual({ path: out, kind: 'file', hash: v1!.bundleHash, size: v1!.size });
  });

  it('refuses to push a tree with secret files, naming them, and registers and stores nothing', async () => {
    const dir = await writeTree(dirFor('leaky'), { 'index.js': 'x', '.env': 'A=1', 'deploy/id_rsa': 'x' });
    const before = await storeState();
    const r = await swarm(['push', dir, '-w', 'acme/app', '--json'], env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'swarm: refusing to pack 2 files that look like secrets: .env (matches .env), deploy/id_rsa (matches id_rsa) (hint: secrets reach a workflow through the orchestrator (swarm spawn --secret KEY=VALUE), never inside a bundle; exclude these files in .swarmignore, or pass --allow-secret-files if they are not secret)\n',
    );
    expect(await storeState()).toEqual(before);
    const [pack, hash] = await Promise.all([swarm(['pack', dir, '-o', path.join(work, 'leaky.tar.gz')], {}), swarm(['hash', dir], {})]);
    expect([pack.code, hash.code]).toEqual([2, 2]);
    expect(pack.stderr).toContain('.env (matches .env), deploy/id_rsa');
    expect(hash.stderr).toContain('.env (matches .env), deploy/id_rsa');
    await expect(fs.access(path.join(work, 'leaky.tar.gz'))).rejects.toThrow();
  });

  it('pushes secret files with --allow-secret-files', async () => {
    const dir = await writeTree(dirFor('allowed'), { 'index.js': 'x', 'ca.pem': 'public CA certificate' });
    const r = await swarm(['push', dir, '-w', 'acme/app', '--allow-secret-files', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const { hash } = await packBundle(dir, { allowSecretFiles: true });
    expect(JSON.parse(r.stdout)).toMatchObject({ created: true, bundleHash: hash });
  });

  it('draws a progress bar with bytes, rate and ETA on a terminal', async () => {
    const tsx = path.join(repoRoot, 'node_modules/.bin/tsx');
    const cli = path.join(repoRoot, 'packages/sdk/src/cli/main.ts');
    // `script` gives the CLI a pseudo-terminal; nothing leaves this machine.
    const { stdout } = await run('script', ['-qec', `${tsx} ${cli} hash ${app}`, '/dev/null'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm' },
    });
    expect(stdout).toMatch(/packing\s+\[.*\] 100% \| 29\d KiB \/ 29\d KiB \| .*\/s \| ETA \d+s/);
    expect(stdout).not.toContain('packing done');
  });

  it('fails with one line for each bad input', async () => {
    const empty = dirFor('empty-cli');
    await fs.mkdir(empty);
    const cases: Array<[string[], RegExp]> = [
      [['pack', path.join(work, 'missing'), '-o', path.join(work, 'x.tar.gz')], /^swarm: .*missing does not exist\n$/],
      [
        ['pack', app, '-o', path.join(work, 'missing-dir', 'x.tar.gz')],
        /^swarm: cannot write .*x\.tar\.gz: directory .*missing-dir does not exist\n$/,
      ],
      [['pack', app], /^error: required option '-o, --output <file>' not specified\n/],
      [['pack', empty, '-o', path.join(work, 'e.tar.gz')], /^swarm: nothing to pack: .* has no files\n$/],
      [['hash', path.join(work, 'missing')], /^swarm: .*missing does not exist\n$/],
    ];
    const results = await Promise.all(cases.map(([args]) => swarm([...args, '--json'], {})));
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(cases[i]![1]);
    });
  });
});
