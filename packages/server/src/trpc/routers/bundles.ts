import { bundle, inputs } from '@swarm/sdk/contract';
import { z } from 'zod';
import { bundleExists, getBundle } from '../../services/bundles.js';
import type { Deps } from '../../services/context.js';
import { type ProcedureTable, query } from '../procedure.js';

export const bundlesProcedures = (deps: Deps) =>
  ({
    get: query({
      input: inputs.bundleGet,
      output: bundle,
      run: ({ principal, input }) => getBundle(deps, principal, input),
    }),
    exists: query({
      input: inputs.bundleGet,
      output: z.boolean(),
      run: ({ principal, input }) => bundleExists(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
