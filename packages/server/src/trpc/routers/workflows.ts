import { inputs, workflow, workflowVersion } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { listVersions } from '../../services/versions.js';
import { createWorkflow, getWorkflow, listWorkflows, setWorkflow } from '../../services/workflows.js';
import { authedProcedure, router } from '../init.js';

export const workflowsRouter = (deps: Deps) =>
  router({
    create: authedProcedure
      .input(inputs.workflowCreate)
      .output(workflow)
      .mutation(({ ctx, input }) => createWorkflow(deps, ctx.principal, input)),
    get: authedProcedure
      .input(inputs.workflowGet)
      .output(workflow)
      .query(({ ctx, input }) => getWorkflow(deps, ctx.principal, input)),
    list: authedProcedure
      .input(inputs.workflowList)
      .output(z.array(workflow))
      .query(({ ctx, input }) => listWorkflows(deps, ctx.principal, input)),
    /** Admin or the tenant: a workflow's settings (its executions' default timeout). */
    set: authedProcedure
      .input(inputs.workflowSet)
      .output(workflow)
      .mutation(({ ctx, input }) => setWorkflow(deps, ctx.principal, input)),
    versions: authedProcedure
      .input(inputs.workflowGet)
      .output(z.array(workflowVersion))
      .query(({ ctx, input }) => listVersions(deps, ctx.principal, input)),
  });
