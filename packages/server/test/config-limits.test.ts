/** The settings of #12 §3's limits: defaults, and each bad value refused with its name. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('upload and diff limits', () => {
  it('default to 8 uploads per token, 64 in all, 16 KiB/s over 30 s, 2 diffs at once and 8 waiting', () => {
    const c = loadConfig({});
    expect(c.uploads).toEqual({ maxPerToken: 8, max: 64, minBytesPerSecond: 16 * 1024, rateWindowMs: 30_000 });
    expect(c.diffs).toEqual({ max: 2, maxQueued: 8 });
  });

  it('turns the minimum rate off with 0', () => {
    expect(loadConfig({ SWARM_UPLOAD_MIN_BYTES_PER_SECOND: '0' }).uploads.minBytesPerSecond).toBe(0);
  });

  for (const [name, value] of [
    ['SWARM_MAX_UPLOADS_PER_TOKEN', '0'],
    ['SWARM_MAX_UPLOADS_PER_TOKEN', 'many'],
    ['SWARM_MAX_UPLOADS', '0'],
    ['SWARM_MAX_UPLOADS', '1.5'],
    ['SWARM_UPLOAD_MIN_BYTES_PER_SECOND', '-1'],
    ['SWARM_UPLOAD_RATE_WINDOW_SECONDS', '0'],
    ['SWARM_UPLOAD_RATE_WINDOW_SECONDS', '3601'],
    ['SWARM_MAX_DIFFS', '0'],
    ['SWARM_MAX_QUEUED_DIFFS', '-1'],
  ] as const) {
    it(`refuses ${name}=${value}`, () => {
      expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
    });
  }
});
