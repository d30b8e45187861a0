/**
 * What the workflow prints. The runtime's stdout and stderr are pipes to the agent, never
 * the console: every secret value given to the execution is replaced by `***` here, in the
 * byte stream, before the text goes anywhere (the agent's own stdout/stderr, which is the VM
 * console, and the registry's `output` events). A value split across writes is still
 * masked: the last (longest secret − 1) bytes of a stream wait for the next write.
 *
 * The registry gets the masked text as lines, in batches (one `output` event of at most
 * ~16 KiB of JSON), bounded per line (longer lines are cut), per execution (bytes and
 * lines) and by rate (a token bucket over bytes). What goes past a bound is dropped and
 * counted, never waited for: the workflow is never slowed down by its own output, and one
 * `output_truncated` event reports the counts at the end. Bytes that are not UTF-8 are
 * escaped as `\xNN` (the line says `escaped: true`), not dropped.
 */

export type OutputStream = 'stdout' | 'stderr';
export type OutputLine = { stream: OutputStream; text: string; at: string; cut?: true; escaped?: true };

export type OutputLimits = {
  /** Longest line shipped, in bytes of its JSON text; longer lines are cut. */
  maxLineBytes: number;
  /** Per execution, bytes of line text shipped; past it lines are dropped and counted. */
  maxBytes: number;
  /** Per execution, lines shipped. */
  maxLines: number;
  /** Token bucket over shipped bytes: refill per second, and its size (a burst). */
  bytesPerSecond: number;
  burstBytes: number;
  /** One `output` event's lines take at most this many bytes of JSON. */
  maxBatchBytes: number;
  /** A batch waits at most this long for more lines. */
  flushMs: number;
};

export const DEFAULT_OUTPUT_LIMITS: OutputLimits = {
  maxLineBytes: 8 * 1024,
  maxBytes: 4 * 1024 * 1024,
  maxLines: 100_000,
  bytesPerSecond: 512 * 1024,
  burstBytes: 1024 * 1024,
  maxBatchBytes: 15 * 1024,
  flushMs: 200,
};

/** What output went unshipped, and why: the `output_truncated` event's data. */
export type OutputDropped = {
  /** Lines dropped past the per-execution byte or line budget. */
  budgetLines: number;
  budgetBytes: number;
  /** Lines dropped past the rate. */
  rateLines: number;
  rateBytes: number;
  /** Lines cut at the line cap, and the bytes cut off them. */
  cutLines: number;
  cutBytes: number;
};

export const MASK = '***';
/** The least JSON a line takes besides its text ({"stream":"stdout","text":"","at":"…"}). */
const MIN_LINE_BYTES = 56;
const MASK_BYTES = Buffer.from(MASK);
const NEWLINE = 0x0a;

/**
 * The byte strings to mask: each secret value, and each line of a multi-line value (a PEM
 * key printed line by line is masked too), longest first (a value containing another is
 * masked whole).
 */
export function maskPatterns(secrets: Record<string, string>): Buffer[] {
  const values = new Set<string>();
  for (const v of Object.values(secrets)) {
    if (!v) continue;
    values.add(v);
    for (const part of v.split(/\r?\n/)) if (part.trim()) values.add(part);
  }
  return [...values].map((v) => Buffer.from(v)).sort((a, b) => b.length - a.length);
}

/**
 * Masks one stream's bytes as they arrive. `push` returns the masked bytes that are safe
 * to release: everything but a tail that could still be the start of a secret.
 */
export class StreamMasker {
  private held: Buffer = Buffer.alloc(0);
  private readonly keep: number;

  constructor(private readonly patterns: Buffer[]) {
    this.keep = patterns.length ? Math.max(...patterns.map((p) => p.length)) - 1 : 0;
  }

  push(chunk: Buffer): Buffer {
    if (!this.patterns.length) return chunk;
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const { out, safeEnd } = this.mask(buf, false);
    this.held = Buffer.from(buf.subarray(safeEnd));
    return out;
  }

  /** The rest, at the end of the stream. */
  end(): Buffer {
    if (!this.patterns.length || !this.held.length) return Buffer.alloc(0);
    const { out } = this.mask(this.held, true);
    this.held = Buffer.alloc(0);
    return out;
  }

  /**
   * Where the tail that may still become a secret starts: the first position, in the last
   * `keep` bytes and not before `from`, from which the rest of `buf` begins some pattern.
   */
  private heldFrom(buf: Buffer, from: number): number {
    for (let i = Math.max(from, buf.length - this.keep); i < buf.length; i++) if (this.startsSecret(buf, i)) return i;
    return buf.length;
  }

  /** Whether the rest of `buf` from `at` is the start (not the whole) of some secret; compared in place, for every chunk's tail. */
  private startsSecret(buf: Buffer, at: number): boolean {
    const rest = buf.length - at;
    return this.patterns.some((p) => p[0] === buf[at] && p.length > rest && buf.compare(p, 0, rest, at) === 0);
  }

  /**
   * Replaces every whole occurrence; releases up to `safeEnd`: past the last replacement,
   * and short of a tail that may be the start of a secret (more bytes decide), unless final.
   */
  private mask(buf: Buffer, final: boolean): { out: Buffer; safeEnd: number } {
    const limit = final ? buf.length : Math.max(0, buf.length - this.keep);
    const parts: Buffer[] = [];
    let from = 0;
    // Next occurrence of each pattern at or after `from`; -1 when none.
    const next = this.patterns.map((p) => buf.indexOf(p, 0));
    for (;;) {
      let best = -1;
      let at = Number.POSITIVE_INFINITY;
      for (let i = 0; i < next.length; i++) {
        if (next[i]! >= 0 && next[i]! < at) {
          at = next[i]!;
          best = i;
        }
      }
      if (best < 0) break;
      // An occurrence in the tail that may still grow into a longer secret waits for more bytes.
      if (at >= limit && this.startsSecret(buf, at)) break;
      parts.push(buf.subarray(from, at), MASK_BYTES);
      from = at + this.patterns[best]!.length;
      for (let i = 0; i < next.length; i++) if (next[i]! >= 0 && next[i]! < from) next[i] = buf.indexOf(this.patterns[i]!, from);
    }
    // Only a tail that is the start of a secret waits: a short line or a prompt is not held.
    const safeEnd = final ? buf.length : this.heldFrom(buf, from);
    parts.push(buf.subarray(from, safeEnd));
    return { out: parts.length === 1 ? parts[0]! : Buffer.concat(parts), safeEnd };
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as text: UTF-8 as it is, NUL and any byte that is not part of valid UTF-8 as `\xNN`. */
export function decodeLine(bytes: Buffer): { text: string; escaped: boolean } {
  // NUL is valid UTF-8 but not storable (PostgreSQL's jsonb refuses \u0000): escaped too.
  if (!bytes.includes(0)) {
    try {
      return { text: UTF8.decode(bytes), escaped: false };
    } catch {}
  }
  let text = '';
  let i = 0;
  while (i < bytes.length) {
    const n = validSequenceLength(bytes, i);
    if (n > 0) {
      text += bytes.toString('utf8', i, i + n);
      i += n;
    } else {
      text += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
      i++;
    }
  }
  return { text, escaped: true };
}

/** The length of the valid UTF-8 sequence starting at `i` (RFC 3629), or 0. */
function validSequenceLength(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c === 0) return 0;
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < b.length && (b[i + k]! & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const c1 = b[i + 1] ?? 0;
    if (c === 0xe0 && c1 < 0xa0) return 0;
    if (c === 0xed && c1 > 0x9f) return 0;
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const c1 = b[i + 1] ?? 0;
    if (c === 0xf0 && c1 < 0x90) return 0;
    if (c === 0xf4 && c1 > 0x8f) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/** A line's size as it travels (its JSON text). */
const jsonBytes = (s: string) => Buffer.byteLength(JSON.stringify(s));
/** What JSON.stringify escapes in a well-formed string. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const NEEDS_JSON_ESCAPE = /["\\\u0000-\u001f]/;
/** An `OutputLine`'s JSON besides its values' own text: its keys and punctuation (the text's quotes are the text's). */
const LINE_JSON_BYTES = JSON.stringify({ stream: '', text: '', at: '' }).length - 2;
const CUT_JSON_BYTES = ',"cut":true'.length;
const ESCAPED_JSON_BYTES = ',"escaped":true'.length;

/** Cuts `text` so that its JSON text takes at most `max` bytes. */
function cutToJson(text: string, max: number): string {
  let t = text;
  for (let size = jsonBytes(t); size > max; size = jsonBytes(t)) {
    t = t.slice(0, Math.max(0, Math.floor((t.length * max) / size) - 1));
  }
  return t;
}

/** A stream's unfinished line: its masked bytes up to the line cap, and what the cap cut off. */
type PartialLine = { bytes: Buffer[]; size: number; cut: boolean; cutBytes: number };

const emptyLine = (): PartialLine => ({ bytes: [], size: 0, cut: false, cutBytes: 0 });

function clearLine(p: PartialLine): void {
  // Most lines of a chunk are refused without ever holding bytes: no new array for them.
  if (p.bytes.length) p.bytes = [];
  p.size = 0;
  p.cut = false;
  p.cutBytes = 0;
}

/**
 * Masked output of both streams to the console and, as batches of lines within the
 * limits, to `ship` (the event reporter).
 */
export class OutputCapture {
  private readonly maskers: Record<OutputStream, StreamMasker>;
  private readonly partial: Record<OutputStream, PartialLine>;
  private batch: OutputLine[] = [];
  private batchBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private shippedBytes = 0;
  private shippedLines = 0;
  private tokens: number;
  /** Set at the first line past the budget: every later line is dropped (and counted). */
  private budgetSpent = false;
  private refilledAt = Date.now();
  /** The last line's time as text: lines of the same millisecond share it. */
  private at = { ms: 0, text: '' };
  readonly dropped: OutputDropped = { budgetLines: 0, budgetBytes: 0, rateLines: 0, rateBytes: 0, cutLines: 0, cutBytes: 0 };

  constructor(
    secrets: Record<string, string>,
    private readonly limits: OutputLimits,
    private readonly console: Record<OutputStream, NodeJS.WritableStream>,
    /** Takes a batch; false when it cannot (too many wait): the lines count as dropped for the rate. */
    private readonly ship: ((lines: OutputLine[]) => boolean) | undefined,
  ) {
    const patterns = maskPatterns(secrets);
    this.maskers = { stdout: new StreamMasker(patterns), stderr: new StreamMasker(patterns) };
    this.partial = { stdout: emptyLine(), stderr: emptyLine() };
    this.tokens = limits.burstBytes;
  }

  /** False when the console is congested: the caller waits for `drained` (as a workflow writing to it would). */
  write(stream: OutputStream, chunk: Buffer): boolean {
    return this.take(stream, this.maskers[stream].push(chunk));
  }

  drained(stream: OutputStream, resume: () => void): void {
    this.console[stream].once('drain', resume);
  }

  /** The stream closed: its held tail and unfinished line go out. */
  end(stream: OutputStream): void {
    this.take(stream, this.maskers[stream].end());
    const p = this.partial[stream];
    if (!p.size && !p.cut) return;
    this.refill(Date.now());
    if (this.refused(p.size, p.size + p.cutBytes)) clearLine(p);
    else this.finishLine(stream);
  }

  /** Sends the batch in hand. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.batch.length) return;
    const lines = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (this.ship?.(lines) === false) {
      this.shippedLines -= lines.length;
      this.shippedBytes -= bytes;
      this.dropped.rateLines += lines.length;
      this.dropped.rateBytes += bytes;
    }
  }

  /** The counts for `output_truncated`, or undefined when nothing was dropped or cut. */
  truncated(): (OutputDropped & { shippedBytes: number; shippedLines: number }) | undefined {
    const d = this.dropped;
    if (!d.budgetLines && !d.rateLines && !d.cutLines) return undefined;
    return { ...d, shippedBytes: this.shippedBytes, shippedLines: this.shippedLines };
  }

  private take(stream: OutputStream, masked: Buffer): boolean {
    if (!masked.length) return true;
    const flowing = this.console[stream].write(masked);
    if (this.ship) this.splitLines(stream, masked);
    return flowing;
  }

  /**
   * Ends a line at each newline of the chunk. A line that the budget or the rate refuses is
   * counted from its length alone, without a Buffer, string or object of its own: past the
   * rate's burst nearly every line of a chatty workflow is refused (a workflow printing
   * 100 MB must not pay per line for lines nobody keeps).
   */
  private splitLines(stream: OutputStream, masked: Buffer): void {
    this.refill(Date.now());
    const p = this.partial[stream];
    let from = 0;
    for (let nl = masked.indexOf(NEWLINE); nl >= 0; nl = masked.indexOf(NEWLINE, from)) {
      const length = nl - from;
      if (this.refused(Math.min(this.limits.maxLineBytes, p.size + length), p.size + p.cutBytes + length)) clearLine(p);
      else {
        this.addToLine(p, masked.subarray(from, nl));
        this.finishLine(stream);
      }
      from = nl + 1;
    }
    if (from < masked.length) this.addToLine(p, masked.subarray(from));
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.limits.burstBytes, this.tokens + ((now - this.refilledAt) / 1000) * this.limits.bytesPerSecond);
    this.refilledAt = now;
  }

  /**
   * Whether a line of `kept` bytes (after the line cap; `bytes` in all) cannot ship: past
   * the budget (every later line is refused too) or the rate. A refused line is counted.
   * The least JSON it would take decides, so a line let through may still be refused by
   * its exact size once decoded.
   */
  private refused(kept: number, bytes: number): boolean {
    if (this.budgetSpent || this.shippedBytes + kept + MIN_LINE_BYTES > this.limits.maxBytes || this.shippedLines >= this.limits.maxLines) {
      this.budgetSpent = true;
      this.dropped.budgetLines++;
      this.dropped.budgetBytes += bytes;
      return true;
    }
    if (kept + MIN_LINE_BYTES > this.tokens) {
      this.dropped.rateLines++;
      this.dropped.rateBytes += bytes;
      return true;
    }
    return false;
  }

  /** Keeps at most the line cap of an unfinished line (plus a little for escaping to decide); counts the rest. */
  private addToLine(p: PartialLine, bytes: Buffer): void {
    if (!bytes.length) return;
    const room = this.limits.maxLineBytes - p.size;
    // Kept by reference: a stream's chunks are fresh buffers, never written again.
    if (room >= bytes.length) {
      p.bytes.push(bytes);
      p.size += bytes.length;
      return;
    }
    if (room > 0) {
      p.bytes.push(bytes.subarray(0, room));
      p.size += room;
    }
    p.cut = true;
    p.cutBytes += bytes.length - Math.max(0, room);
  }

  private timestamp(ms: number): string {
    if (this.at.ms !== ms) this.at = { ms, text: new Date(ms).toISOString() };
    return this.at.text;
  }

  /** Decodes the unfinished line, which the cheap checks let through, and ships it if its exact size fits too. */
  private finishLine(stream: OutputStream): void {
    const p = this.partial[stream];
    // What a refusal counts: the line's bytes, the part cut off at the line cap included.
    const lineBytes = p.size + p.cutBytes;
    const raw = p.bytes.length === 1 ? p.bytes[0]! : Buffer.concat(p.bytes, p.size);
    let cut = p.cut;
    let cutBytes = p.cutBytes;
    clearLine(p);
    const now = Date.now();
    const bytes = raw.at(-1) === 0x0d ? raw.subarray(0, -1) : raw;
    const { text: decoded, escaped } = decodeLine(bytes);
    let text = decoded;
    // Text that JSON leaves as it is (decoded from valid UTF-8, so no lone surrogate) takes its
    // bytes and two quotes: most lines are measured without a JSON copy of them.
    let textBytes = escaped || NEEDS_JSON_ESCAPE.test(text) ? jsonBytes(text) : bytes.length + 2;
    if (textBytes > this.limits.maxLineBytes) {
      text = cutToJson(text, this.limits.maxLineBytes);
      textBytes = jsonBytes(text);
      cut = true;
      cutBytes += Math.max(1, Buffer.byteLength(decoded) - Buffer.byteLength(text));
    }
    const at = this.timestamp(now);
    const line: OutputLine = { stream, text, at };
    if (cut) line.cut = true;
    if (escaped) line.escaped = true;
    // Counted as it travels (its JSON text, and a separator), as the registry counts it.
    const size =
      LINE_JSON_BYTES + stream.length + textBytes + at.length + (cut ? CUT_JSON_BYTES : 0) + (escaped ? ESCAPED_JSON_BYTES : 0) + 1;
    if (this.shippedBytes + size > this.limits.maxBytes) {
      this.budgetSpent = true;
      this.dropped.budgetLines++;
      this.dropped.budgetBytes += lineBytes;
      return;
    }
    if (size > this.tokens) {
      this.dropped.rateLines++;
      this.dropped.rateBytes += lineBytes;
      return;
    }
    this.tokens -= size;
    if (cut) {
      this.dropped.cutLines++;
      this.dropped.cutBytes += cutBytes;
    }
    if (this.batchBytes + size > this.limits.maxBatchBytes) this.flush();
    this.shippedBytes += size;
    this.shippedLines++;
    this.batch.push(line);
    this.batchBytes += size;
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.limits.flushMs);
      this.timer.unref();
    }
  }
}

/** The capture of one execution: to the console (this process's stdout/stderr) and to the registry's events. */
export function captureOutput(
  secrets: Record<string, string>,
  maxBytes: number | undefined,
  reporter: { emitOutput(data: Record<string, unknown>): boolean } | undefined,
): OutputCapture {
  const limits = { ...DEFAULT_OUTPUT_LIMITS, ...(maxBytes === undefined ? {} : { maxBytes }) };
  return new OutputCapture(
    secrets,
    limits,
    { stdout: process.stdout, stderr: process.stderr },
    reporter && ((lines) => reporter.emitOutput({ lines })),
  );
}
