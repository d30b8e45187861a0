import { expect } from 'vitest';
import { SwarmError } from '../../packages/sdk/src/index.js';

/** The SwarmError a call fails with (the test fails if it succeeds). */
export async function failure(p: Promise<unknown>): Promise<SwarmError> {
  const err = await p.then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SwarmError);
  return err as SwarmError;
}
