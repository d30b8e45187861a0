import { inputs, tenant } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { createTenant, getTenant, listTenants } from '../../services/tenants.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

export const tenantsProcedures = (deps: Deps) =>
  ({
    create: mutation({
      input: inputs.tenantCreate,
      output: tenant,
      run: ({ principal, input }) => createTenant(deps, principal, input),
    }),
    get: query({
      input: inputs.tenantGet,
      output: tenant,
      run: ({ principal, input }) => getTenant(deps, principal, input),
    }),
    list: query({ output: z.array(tenant), run: ({ principal }) => listTenants(deps, principal) }),
  }) satisfies ProcedureTable;
