import { inputs, tenant } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { createTenant, getTenant, listTenants } from '../../services/tenants.js';
import { authedProcedure, router } from '../init.js';

export const tenantsRouter = (deps: Deps) =>
  router({
    create: authedProcedure
      .input(inputs.tenantCreate)
      .output(tenant)
      .mutation(({ ctx, input }) => createTenant(deps, ctx.principal, input)),
    get: authedProcedure
      .input(inputs.tenantGet)
      .output(tenant)
      .query(({ ctx, input }) => getTenant(deps, ctx.principal, input)),
    list: authedProcedure.output(z.array(tenant)).query(({ ctx }) => listTenants(deps, ctx.principal)),
  });
