/**
 * Output capture (output.ts) on its own: masking (whole, split across writes, repeated,
 * multi-line values), lines, caps and escaping, with real streams as the console.
 */
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_OUTPUT_LIMITS,
  type OutputLimits,
  type OutputLine,
  OutputCapture,
  StreamMasker,
  decodeLine,
  maskPatterns,
} from '../src/output.js';

const SECRET = 's3cr3t-VALUE-0123456789';

function capture(secrets: Record<string, string>, limits: Partial<OutputLimits> = {}, accept = true) {
  const console = { stdout: new PassThrough(), stderr: new PassThrough() };
  const text = { stdout: '', stderr: '' };
  console.stdout.on('data', (c: Buffer) => (text.stdout += c.toString('latin1')));
  console.stderr.on('data', (c: Buffer) => (text.stderr += c.toString('latin1')));
  const batches: OutputLine[][] = [];
  const c = new OutputCapture(secrets, { ...DEFAULT_OUTPUT_LIMITS, flushMs: 60_000, ...limits }, console, (lines) => {
    batches.push(lines);
    return accept;
  });
  return {
    c,
    batches,
    lines: () => batches.flat(),
    console: async () => {
      await new Promise((r) => setImmediate(r));
      return text;
    },
  };
}

/** The reference: at each position the longest secret that starts there becomes `***`. */
function maskWhole(text: string, secrets: string[]): string {
  const longestFirst = [...secrets].sort((a, b) => b.length - a.length);
  let out = '';
  for (let i = 0; i < text.length; ) {
    const s = longestFirst.find((p) => text.startsWith(p, i));
    out += s ? '***' : text[i];
    i += s ? s.length : 1;
  }
  return out;
}

describe('masking', () => {
  it('masks a secret printed whole', async () => {
    const t = capture({ API_KEY: SECRET });
    t.c.write('stdout', Buffer.from(`key=${SECRET}\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(['key=***']);
    expect((await t.console()).stdout).toBe('key=***\n');
  });

  it('masks a secret split across writes, at every split point', async () => {
    for (let cut = 1; cut < SECRET.length; cut++) {
      const t = capture({ API_KEY: SECRET });
      t.c.write('stdout', Buffer.from(`a ${SECRET.slice(0, cut)}`));
      t.c.write('stdout', Buffer.from(`${SECRET.slice(cut)} b\n`));
      t.c.end('stdout');
      t.c.flush();
      expect(t.lines().map((l) => l.text)).toEqual(['a *** b']);
      expect((await t.console()).stdout).not.toContain(SECRET.slice(0, Math.max(cut, SECRET.length - cut)));
    }
  });

  it('masks a secret split into single bytes', async () => {
    const t = capture({ API_KEY: SECRET });
    for (const ch of `>${SECRET}<\n`) t.c.write('stderr', Buffer.from(ch));
    t.c.end('stderr');
    t.c.flush();
    expect(t.lines()).toMatchObject([{ stream: 'stderr', text: '>***<' }]);
    expect((await t.console()).stderr).toBe('>***<\n');
  });

  it('masks a secret split across three writes', async () => {
    const t = capture({ API_KEY: SECRET });
    t.c.write('stdout', Buffer.from(`a ${SECRET.slice(0, 5)}`));
    t.c.write('stdout', Buffer.from(SECRET.slice(5, 15)));
    t.c.write('stdout', Buffer.from(`${SECRET.slice(15)} b\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(['a *** b']);
    expect((await t.console()).stdout).toBe('a *** b\n');
  });

  it('masks as if the stream came in one write, wherever the writes split it', async () => {
    // Secrets over a small alphabet, so that they overlap, repeat and start one another.
    const text = (alphabet: string, max: number) => fc.string({ unit: fc.constantFrom(...alphabet), maxLength: max });
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(
          text('abc', 6).filter((s) => s.length >= 2),
          { minLength: 1, maxLength: 3 },
        ),
        text('abc\n', 80),
        fc.array(fc.nat(80), { maxLength: 6 }),
        async (secrets, printed, cuts) => {
          const t = capture(Object.fromEntries(secrets.map((s, i) => [`S${i}`, s])));
          const at = [...new Set(cuts.map((c) => Math.min(c, printed.length)))].sort((a, b) => a - b);
          let from = 0;
          for (const cut of [...at, printed.length]) {
            t.c.write('stdout', Buffer.from(printed.slice(from, cut)));
            from = cut;
          }
          t.c.end('stdout');
          t.c.flush();
          const expected = maskWhole(printed, secrets);
          expect((await t.console()).stdout).toBe(expected);
          const lines = expected.split('\n');
          if (lines.at(-1) === '') lines.pop();
          expect(t.lines().map((l) => l.text)).toEqual(lines);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('masks a secret repeated on one line, and each secret of several', () => {
    const t = capture({ A: SECRET, B: 'other-secret' });
    t.c.write('stdout', Buffer.from(`${SECRET}${SECRET} x ${SECRET} other-secret\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(['****** x *** ***']);
  });

  it('masks a longer secret that starts with a shorter one, split where the shorter one ends', () => {
    const t = capture({ SHORT: 'abc123', LONG: 'abc123-and-more' });
    t.c.write('stdout', Buffer.from('x abc123'));
    t.c.write('stdout', Buffer.from('-and-more y abc123 z\n'));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(['x *** y *** z']);
  });

  it('masks each line of a multi-line secret printed line by line', () => {
    const pem = '-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----';
    const t = capture({ KEY: pem });
    t.c.write('stdout', Buffer.from(`${pem}\nsecond line MIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(
      t
        .lines()
        .map((l) => l.text)
        .join('\n'),
    ).not.toContain('MIIBVQ');
  });

  it('keeps only a tail that may start a secret until the next write, releases it at the end', () => {
    const m = new StreamMasker(maskPatterns({ K: 'abcdef' }));
    expect(m.push(Buffer.from('xyzabc')).toString()).toBe('xyz');
    expect(m.push(Buffer.from('defq')).toString()).toBe('***q');
    expect(m.push(Buffer.from('prompt> ')).toString()).toBe('prompt> ');
    expect(m.push(Buffer.from('abcde')).toString()).toBe('');
    expect(m.push(Buffer.from('x')).toString()).toBe('abcdex');
    expect(m.push(Buffer.from('aab')).toString()).toBe('a');
    expect(m.end().toString()).toBe('ab');
  });
});

describe('lines and limits', () => {
  it('ships 10,000 lines complete and in order, in batches of at most the batch size', () => {
    const t = capture({});
    for (let i = 0; i < 10_000; i++) t.c.write(i % 2 ? 'stderr' : 'stdout', Buffer.from(`line ${i}\n`));
    t.c.end('stdout');
    t.c.end('stderr');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(Array.from({ length: 10_000 }, (_, i) => `line ${i}`));
    for (const b of t.batches) expect(Buffer.byteLength(JSON.stringify(b))).toBeLessThanOrEqual(16 * 1024);
    expect(t.c.truncated()).toBeUndefined();
  });

  it('cuts a line at the line cap and counts the bytes cut', () => {
    const t = capture({}, { maxLineBytes: 100 });
    t.c.write('stdout', Buffer.from(`${'x'.repeat(250)}\nshort\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines()[0]).toMatchObject({ cut: true });
    expect(Buffer.byteLength(JSON.stringify(t.lines()[0]!.text))).toBeLessThanOrEqual(100);
    expect(t.lines()[1]).toMatchObject({ text: 'short' });
    expect(t.c.truncated()).toMatchObject({ cutLines: 1 });
    expect(t.lines()[0]!.text.length + t.c.truncated()!.cutBytes).toBe(250);
  });

  it('drops lines past the per-execution budget and counts them', () => {
    const t = capture({}, { maxBytes: 1000 });
    for (let i = 0; i < 100; i++) t.c.write('stdout', Buffer.from(`line ${i}\n`));
    t.c.end('stdout');
    t.c.flush();
    const shipped = t.lines().length;
    expect(shipped).toBeGreaterThan(5);
    expect(shipped).toBeLessThan(100);
    expect(t.lines().map((l) => l.text)).toEqual(Array.from({ length: shipped }, (_, i) => `line ${i}`));
    expect(t.c.truncated()).toMatchObject({ budgetLines: 100 - shipped, shippedLines: shipped });
  });

  it('masks a secret that straddles the write where the budget runs out, and counts every line once', async () => {
    const t = capture({ API_KEY: SECRET }, { maxBytes: 1000 });
    const printed = Array.from({ length: 40 }, (_, i) => `line ${i} ${SECRET}\n`).join('');
    // Every write ends inside a secret.
    for (let from = 0; from < printed.length; from += 37) t.c.write('stdout', Buffer.from(printed.slice(from, from + 37)));
    t.c.end('stdout');
    t.c.flush();
    const shipped = t.lines();
    expect(shipped.length).toBeGreaterThan(2);
    expect(shipped.map((l) => l.text)).toEqual(Array.from({ length: shipped.length }, (_, i) => `line ${i} ***`));
    expect(t.c.truncated()).toMatchObject({ budgetLines: 40 - shipped.length, shippedLines: shipped.length });
    expect((await t.console()).stdout).toBe(printed.replaceAll(SECRET, '***'));
  });

  it('counts shipped bytes as the lines travel: their JSON text and a separator each', () => {
    const t = capture({}, { maxLineBytes: 40 });
    t.c.write('stdout', Buffer.from('plain\nquote " and \\ back\ttab\r\nunicode é ✓ 😀\n'));
    t.c.write('stdout', Buffer.concat([Buffer.from('bad '), Buffer.from([0xff, 0x00]), Buffer.from('\n')]));
    t.c.write('stderr', Buffer.from(`${'y'.repeat(60)}\n${'"'.repeat(30)}\n\n`));
    t.c.end('stdout');
    t.c.end('stderr');
    t.c.flush();
    expect(t.lines().some((l) => l.cut) && t.lines().some((l) => l.escaped)).toBe(true);
    const size = t.lines().reduce((n, l) => n + Buffer.byteLength(JSON.stringify(l)) + 1, 0);
    expect(t.c.truncated()).toMatchObject({ shippedBytes: size, shippedLines: 7 });
  });

  it('drops lines past the rate and counts them, without waiting', () => {
    const t = capture({}, { burstBytes: 2000, bytesPerSecond: 1 });
    for (let i = 0; i < 100; i++) t.c.write('stdout', Buffer.from(`line ${i}\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(t.c.truncated()!.rateLines).toBe(100 - t.lines().length);
    expect(t.c.truncated()!.rateLines).toBeGreaterThan(0);
  });

  it('counts batches the reporter could not take as dropped', () => {
    const t = capture({}, {}, false);
    t.c.write('stdout', Buffer.from('a\nb\n'));
    t.c.end('stdout');
    t.c.flush();
    expect(t.c.truncated()).toMatchObject({ rateLines: 2, shippedLines: 0 });
  });

  it('escapes bytes that are not UTF-8, keeps valid UTF-8 as it is', async () => {
    const t = capture({});
    t.c.write('stdout', Buffer.concat([Buffer.from('ok é '), Buffer.from([0xff, 0x00, 0xc3]), Buffer.from(' end\n')]));
    t.c.write('stdout', Buffer.from('plain ✓\n'));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines()).toMatchObject([{ text: 'ok é \\xff\\x00\\xc3 end', escaped: true }, { text: 'plain ✓' }]);
    expect(t.lines()[1]!.escaped).toBeUndefined();
    expect(decodeLine(Buffer.from([0xed, 0xa0, 0x80])).text).toBe('\\xed\\xa0\\x80');
  });

  it('keeps a byte order mark at the start of a line, and counts its bytes as shipped', () => {
    // A line cut at the cap makes the capture report its counts (truncated()).
    const t = capture({}, { maxLineBytes: 40 });
    t.c.write('stdout', Buffer.from(`\ufeffwith a BOM\n\ufeff\n${'y'.repeat(60)}\n`));
    t.c.end('stdout');
    t.c.flush();
    expect(
      t
        .lines()
        .map((l) => l.text)
        .slice(0, 2),
    ).toEqual(['\ufeffwith a BOM', '\ufeff']);
    const size = t.lines().reduce((n, l) => n + Buffer.byteLength(JSON.stringify(l)) + 1, 0);
    expect(t.c.truncated()).toMatchObject({ shippedBytes: size, shippedLines: 3 });
  });

  it('ships an unfinished last line when the stream ends', () => {
    const t = capture({});
    t.c.write('stdout', Buffer.from('no newline'));
    t.c.end('stdout');
    t.c.flush();
    expect(t.lines().map((l) => l.text)).toEqual(['no newline']);
  });
});
