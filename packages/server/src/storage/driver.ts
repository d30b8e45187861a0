import type { Readable } from 'node:stream';

export type ObjectInfo = { key: string; size: number; lastModified: Date };

/**
 * There is no object under `key`: what every driver throws when asked to read it or to
 * move it away, whatever its store answered (ENOENT, NoSuchKey, …), which is kept as `cause`.
 */
export class ObjectNotFound extends Error {
  override readonly name = 'ObjectNotFound';
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`object not found: ${key}`, options);
  }
}

/**
 * What the registry needs from an object store. Keys are '/'-separated paths.
 * Every driver passes the same suite (packages/server/test/support/driver-suite.ts).
 */
export interface StorageDriver {
  readonly kind: 'fs' | 's3';
  /** Creates the bucket or directory if missing. */
  init(): Promise<void>;
  /** Proves the store answers; throws otherwise. */
  check(): Promise<void>;
  /** Stores a stream under key; resolves once every byte is stored. On failure nothing is left under key. */
  put(key: string, body: Readable): Promise<void>;
  /** The object's size and age; null when there is none. */
  stat(key: string): Promise<ObjectInfo | null>;
  /** Reads an object, or `length` bytes of it from `offset`; rejects with ObjectNotFound before any stream exists. */
  get(key: string, range?: { offset: number; length?: number }): Promise<Readable>;
  /**
   * Publishes src under dst, replacing what dst held, and removes src (rename, or
   * server-side copy then delete). A missing src rejects with ObjectNotFound.
   */
  move(src: string, dst: string): Promise<void>;
  /** Removes key; a missing key is not an error. */
  delete(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Stores `body` under key only if `verify` (called once every byte arrived) resolves
   * true, without a temporary object: nothing is readable under key before that, and
   * nothing is left there when it resolves false or anything throws. Resolves whether the
   * object was stored. Drivers without it get put-to-a-temporary-key, then move.
   */
  putVerified?(key: string, body: Readable, verify: () => Promise<boolean>): Promise<boolean>;
  /**
   * Aborts multipart uploads under prefix (and deeper) started before `before` (stores that have them:
   * a crash mid-upload leaves one behind, holding its parts); returns how many.
   */
  abortIncompleteUploads?(prefix: string, before: Date): Promise<number>;
  /**
   * A URL that reads the object without credentials until it expires: `ttlSeconds` after
   * `signedAt` (default now; both drivers count in whole seconds, rounding it down).
   */
  presignGet(key: string, ttlSeconds: number, endpoint?: string, signedAt?: Date): Promise<string>;
}
