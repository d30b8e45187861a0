import { gcReport, releaseEvent, releaseInputs, releaseState, versionDiff } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { diffVersions } from '../../services/diff.js';
import { collectGarbage } from '../../services/gc.js';
import { clearCanary, getReleaseState, promoteCanary, releaseHistory, rollback, setCanary } from '../../services/releases.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

export const releasesProcedures = (deps: Deps) =>
  ({
    /** The active version and canary that spawns pick from. */
    state: query({
      input: releaseInputs.state,
      output: releaseState,
      run: ({ principal, input }) => getReleaseState(deps, principal, input),
    }),
    rollback: mutation({
      input: releaseInputs.rollback,
      output: releaseState,
      run: ({ principal, input }) => rollback(deps, principal, input),
    }),
    setCanary: mutation({
      input: releaseInputs.canarySet,
      output: releaseState,
      run: ({ principal, input }) => setCanary(deps, principal, input),
    }),
    clearCanary: mutation({
      input: releaseInputs.canaryClear,
      output: releaseState,
      run: ({ principal, input }) => clearCanary(deps, principal, input),
    }),
    promote: mutation({
      input: releaseInputs.promote,
      output: releaseState,
      run: ({ principal, input }) => promoteCanary(deps, principal, input),
    }),
    history: query({
      input: releaseInputs.history,
      output: z.array(releaseEvent),
      run: ({ principal, input }) => releaseHistory(deps, principal, input),
    }),
    diff: query({
      input: releaseInputs.diff,
      output: versionDiff,
      run: ({ principal, input }) => diffVersions(deps, principal, input),
    }),
  }) satisfies ProcedureTable;

export const gcProcedures = (deps: Deps) =>
  ({
    /** Admin: retire old versions and free the store (see services/gc.ts). */
    run: mutation({
      input: releaseInputs.gc,
      output: gcReport,
      run: ({ principal, input }) => collectGarbage(deps, principal, input),
    }),
  }) satisfies ProcedureTable;
