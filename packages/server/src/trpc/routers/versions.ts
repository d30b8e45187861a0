import { activeVersion, inputs, workflowRef, workflowVersion } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { activateVersion, registerVersion, resolveActive } from '../../services/versions.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

export const versionsProcedures = (deps: Deps) =>
  ({
    register: mutation({
      input: inputs.versionRegister,
      output: z.object({ version: workflowVersion, created: z.boolean() }),
      run: ({ principal, input }) => registerVersion(deps, principal, input),
    }),
    activate: mutation({
      input: inputs.versionActivate,
      output: workflowVersion,
      run: ({ principal, input }) => activateVersion(deps, principal, input),
    }),
    active: query({
      input: z.object({ workflow: workflowRef }),
      output: activeVersion,
      run: ({ principal, input }) => resolveActive(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
