import { apiToken, createdApiToken, inputs } from '@swarm/sdk/contract';
import { z } from 'zod';
import { createToken, listTokens, revokeToken } from '../../services/auth.js';
import type { Deps } from '../../services/context.js';
import { authedProcedure, router } from '../init.js';

export const tokensRouter = (deps: Deps) =>
  router({
    create: authedProcedure
      .input(inputs.tokenCreate)
      .output(createdApiToken)
      .mutation(({ ctx, input }) => createToken(deps, ctx.principal, input)),
    list: authedProcedure.output(z.array(apiToken)).query(({ ctx }) => listTokens(deps, ctx.principal)),
    revoke: authedProcedure
      .input(inputs.tokenRevoke)
      .output(apiToken)
      .mutation(({ ctx, input }) => revokeToken(deps, ctx.principal, input)),
  });
