import { activeVersion, inputs, workflowRef, workflowVersion } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { activateVersion, registerVersion, resolveActive } from '../../services/versions.js';
import { authedProcedure, router } from '../init.js';

export const versionsRouter = (deps: Deps) =>
  router({
    register: authedProcedure
      .input(inputs.versionRegister)
      .output(z.object({ version: workflowVersion, created: z.boolean() }))
      .mutation(({ ctx, input }) => registerVersion(deps, ctx.principal, input)),
    activate: authedProcedure
      .input(inputs.versionActivate)
      .output(workflowVersion)
      .mutation(({ ctx, input }) => activateVersion(deps, ctx.principal, input)),
    active: authedProcedure
      .input(z.object({ workflow: workflowRef }))
      .output(activeVersion)
      .query(({ ctx, input }) => resolveActive(deps, ctx.principal, input)),
  });
