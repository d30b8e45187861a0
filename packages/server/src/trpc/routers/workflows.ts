import { inputs, workflow, workflowVersion } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { listVersions } from '../../services/versions.js';
import { createWorkflow, getWorkflow, listWorkflows, setWorkflow } from '../../services/workflows.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

export const workflowsProcedures = (deps: Deps) =>
  ({
    create: mutation({
      input: inputs.workflowCreate,
      output: workflow,
      run: ({ principal, input }) => createWorkflow(deps, principal, input),
    }),
    get: query({
      input: inputs.workflowGet,
      output: workflow,
      run: ({ principal, input }) => getWorkflow(deps, principal, input),
    }),
    list: query({
      input: inputs.workflowList,
      output: z.array(workflow),
      run: ({ principal, input }) => listWorkflows(deps, principal, input),
    }),
    /** Admin or the tenant: a workflow's settings (its executions' default timeout). */
    set: mutation({
      input: inputs.workflowSet,
      output: workflow,
      run: ({ principal, input }) => setWorkflow(deps, principal, input),
    }),
    versions: query({
      input: inputs.workflowGet,
      output: z.array(workflowVersion),
      run: ({ principal, input }) => listVersions(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
