/**
 * Bundle archives for tests, generated at test time (no binary blobs): raw tar archives
 * crafted header by header with node-tar's `Header` (so entries no honest packer would
 * write are possible) and gzip bombs streamed to a temporary file. Free of the agent's
 * code, so the registry's tests refuse the very archives the agent's tests refuse.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib, { createGzip } from 'node:zlib';
import { Header, Pax } from 'tar';

const BLOCK = 512;
const MTIME = new Date('2024-01-01T00:00:00Z');

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await fs.open(file)).createReadStream({ highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export type EntryType = 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';

export type TarEntry = {
  path: string;
  type?: EntryType;
  mode?: number;
  body?: string | Buffer;
  linkpath?: string;
  devmaj?: number;
  devmin?: number;
  /** Size written in the header when it must differ from the body (a gzip bomb's announced size). */
  size?: number;
};

/** The header block(s) of one entry: a PAX extended header first when the path is too long for ustar. */
export function headerBlocks(e: TarEntry): Buffer {
  const type = e.type ?? 'File';
  const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
  const size = e.size ?? (type === 'File' ? body.length : 0);
  const data = {
    path: e.path,
    type,
    mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
    uid: 0,
    gid: 0,
    uname: 'root',
    gname: 'root',
    size,
    mtime: MTIME,
    linkpath: e.linkpath ?? '',
    devmaj: e.devmaj ?? 0,
    devmin: e.devmin ?? 0,
  };
  const header = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(e.path) <= 100) {
    if (!new Header(data).encode(header)) return header;
  }
  // Too long for ustar: the path goes in a PAX extended header, the ustar header gets a stand-in
  // (as GNU tar and node-tar write it). Encoding the long path into ustar is also quadratic in node-tar.
  new Header({ ...data, path: e.path.slice(-99).replace(/^\/+/, '') || 'long' }).encode(header);
  return Buffer.concat([new Pax({ path: e.path, mtime: MTIME }).encode(), header]);
}

const padding = (n: number) => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** One entry as raw tar bytes: header(s), body, zero padding to the block size. */
export function entryBytes(e: TarEntry): Buffer {
  const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
  return Buffer.concat([headerBlocks(e), body, padding(body.length)]);
}

/** End of archive: two zero blocks. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export function tarBytes(entries: TarEntry[]): Buffer {
  return Buffer.concat([...entries.map(entryBytes), END_OF_ARCHIVE]);
}

export const gzip = (data: Buffer) => zlib.gzipSync(data);

export type Blob = { bytes: Buffer; hash: string };
export const blob = (bytes: Buffer): Blob => ({ bytes, hash: sha256(bytes) });

/** A gzip'd tar of `entries`, with its sha256. */
export const bundle = (entries: TarEntry[]): Blob => blob(gzip(tarBytes(entries)));

/** A manifest whose entrypoint prints a marker and exits with `code`: if it ever runs, the output shows it. */
export const manifest = (code = 0, marker = 'WORKFLOW-RAN'): TarEntry => ({
  path: 'swarm.json',
  body: JSON.stringify({ entrypoint: ['sh', '-c', `echo ${marker}; exit ${code}`] }),
});

/** `count` empty files (header blocks only, 1,000 to a directory), gzip'd at level 1: ~100 MB of tar in about a second. */
export function manyEntriesBundle(count: number): Blob {
  const parts: Buffer[] = [entryBytes(manifest())];
  for (let i = 0; i < count; i++) {
    const dir = `d${Math.floor(i / 1000)}`;
    if (i % 1000 === 0) parts.push(headerBlocks({ path: `${dir}/`, type: 'Directory' }));
    parts.push(headerBlocks({ path: `${dir}/f${i}` }));
  }
  parts.push(END_OF_ARCHIVE);
  return blob(zlib.gzipSync(Buffer.concat(parts), { level: 1 }));
}

/**
 * A gzip bomb written to `file`: one tar entry announcing `size` bytes of zeros, streamed
 * through zlib (never held in memory). 1 GiB of zeros gzips to about 1 MiB.
 */
export async function gzipBombFile(file: string, size = 1024 ** 3): Promise<Blob & { file: string }> {
  const chunk = Buffer.alloc(1024 * 1024);
  async function* tar() {
    yield entryBytes(manifest());
    yield headerBlocks({ path: 'zeros.bin', size });
    for (let left = size; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    yield padding(size);
    yield END_OF_ARCHIVE;
  }
  await pipeline(Readable.from(tar()), zlib.createGzip({ level: 6 }), createWriteStream(file));
  const bytes = await fs.readFile(file);
  return { file, bytes, hash: sha256(bytes) };
}

/** `bytes` of deterministic, incompressible noise (a sha512 chain). */
export function noise(bytes = 256 * 1024): Buffer {
  const parts: Buffer[] = [];
  let seed = Buffer.from('swarm');
  for (let made = 0; made < bytes; made += seed.length) {
    seed = createHash('sha512').update(seed).digest();
    parts.push(seed);
  }
  return Buffer.concat(parts).subarray(0, bytes);
}

/** A valid bundle holding `data/noise.bin` (incompressible, so a download can be cut in the middle). */
export const bigBundle = (code = 0, bytes = 256 * 1024): Blob => bundle([manifest(code), { path: 'data/noise.bin', body: noise(bytes) }]);

/**
 * A large bundle streamed, never held in memory: one tar entry `data.bin` of `size` bytes,
 * `block` repeated (size a multiple of its length), gzip'd at level 0: random bytes do not
 * compress, so any level ends up writing these stored blocks, and level 0 skips the
 * compressor's search. `stream()` makes the same bytes each time; hash and length are of them.
 */
export async function streamedBundle(block: Buffer, size: number): Promise<{ hash: string; length: number; stream: () => Readable }> {
  const stream = () =>
    Readable.from(
      (function* () {
        yield headerBlocks({ path: 'data.bin', size });
        for (let left = size; left > 0; left -= block.length) yield block;
        yield END_OF_ARCHIVE;
      })(),
    ).pipe(createGzip({ level: 0 }));
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of stream()) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return { hash: hash.digest('hex'), length, stream };
}
