import { apiToken, createdApiToken, inputs } from '@swarm/sdk/contract';
import { z } from 'zod';
import { createToken, listTokens, revokeToken } from '../../services/auth.js';
import type { Deps } from '../../services/context.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

export const tokensProcedures = (deps: Deps) =>
  ({
    create: mutation({
      input: inputs.tokenCreate,
      output: createdApiToken,
      run: ({ principal, input }) => createToken(deps, principal, input),
    }),
    list: query({ output: z.array(apiToken), run: ({ principal }) => listTokens(deps, principal) }),
    revoke: mutation({
      input: inputs.tokenRevoke,
      output: apiToken,
      run: ({ principal, input }) => revokeToken(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
