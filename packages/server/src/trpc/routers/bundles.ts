import { bundle, inputs } from '@swarm/sdk/contract';
import { z } from 'zod';
import { bundleExists, getBundle } from '../../services/bundles.js';
import type { Deps } from '../../services/context.js';
import { authedProcedure, router } from '../init.js';

export const bundlesRouter = (deps: Deps) =>
  router({
    get: authedProcedure
      .input(inputs.bundleGet)
      .output(bundle)
      .query(({ ctx, input }) => getBundle(deps, ctx.principal, input)),
    exists: authedProcedure
      .input(inputs.bundleGet)
      .output(z.boolean())
      .query(({ ctx, input }) => bundleExists(deps, ctx.principal, input)),
  });
