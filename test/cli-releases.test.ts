/**
 * The release commands' own input checks: each bad invocation exits 2 with a one-line
 * error naming the problem, before anything reaches the registry (which is unreachable
 * here on purpose: a request would fail differently).
 */
import { describe, expect, it } from 'vitest';
import { swarm } from './support/cli.js';

// Port 9 on loopback: nothing listens, so a command that got past its checks would fail with a network error.
const env = { SWARM_URL: 'http://127.0.0.1:9', SWARM_TOKEN: 'swt_unused' };

describe('swarm release commands refuse bad input locally', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['canary without --weight', ['canary', 'acme/hello', '2'], /needs a version and --weight/],
    ['canary without a version', ['canary', 'acme/hello', '--weight', '10'], /needs a version and --weight/],
    ['canary weight 0', ['canary', 'acme/hello', '2', '--weight', '0'], /--weight must be a percentage from 1 to 99/],
    ['canary weight 150', ['canary', 'acme/hello', '2', '--weight', '150'], /--weight must be a percentage from 1 to 99/],
    ['canary weight 12.5', ['canary', 'acme/hello', '2', '--weight', '12.5'], /--weight must be a percentage from 1 to 99/],
    ['canary --clear with a version', ['canary', 'acme/hello', '2', '--clear'], /--clear takes no version or --weight/],
    ['rollback --to a word', ['rollback', 'acme/hello', '--to', 'latest'], /--to must be a version number/],
    ['diff of version 0', ['diff', 'acme/hello', '0', '2'], /from must be a version number/],
    ['gc --keep 0', ['gc', '--keep', '0'], /--keep must be a positive whole number/],
    ['gc --older-than in fortnights', ['gc', '--older-than', '2fortnights'], /--older-than must be a duration like 30d/],
    ['history --limit -1', ['history', 'acme/hello', '--limit', '-1'], /--limit must be a positive whole number/],
  ];
  for (const [label, args, message] of cases) {
    it(`refuses ${label}`, async () => {
      const r = await swarm(args, env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
    });
  }
});
