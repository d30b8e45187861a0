import { gcReport, releaseEvent, releaseInputs, releaseState, versionDiff } from '@swarm/sdk/contract';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import { diffVersions } from '../../services/diff.js';
import { collectGarbage } from '../../services/gc.js';
import { clearCanary, getReleaseState, promoteCanary, releaseHistory, rollback, setCanary } from '../../services/releases.js';
import { authedProcedure, router } from '../init.js';

export const releasesRouter = (deps: Deps) =>
  router({
    /** The active version and canary that spawns pick from. */
    state: authedProcedure
      .input(releaseInputs.state)
      .output(releaseState)
      .query(({ ctx, input }) => getReleaseState(deps, ctx.principal, input)),
    rollback: authedProcedure
      .input(releaseInputs.rollback)
      .output(releaseState)
      .mutation(({ ctx, input }) => rollback(deps, ctx.principal, input)),
    setCanary: authedProcedure
      .input(releaseInputs.canarySet)
      .output(releaseState)
      .mutation(({ ctx, input }) => setCanary(deps, ctx.principal, input)),
    clearCanary: authedProcedure
      .input(releaseInputs.canaryClear)
      .output(releaseState)
      .mutation(({ ctx, input }) => clearCanary(deps, ctx.principal, input)),
    promote: authedProcedure
      .input(releaseInputs.promote)
      .output(releaseState)
      .mutation(({ ctx, input }) => promoteCanary(deps, ctx.principal, input)),
    history: authedProcedure
      .input(releaseInputs.history)
      .output(z.array(releaseEvent))
      .query(({ ctx, input }) => releaseHistory(deps, ctx.principal, input)),
    diff: authedProcedure
      .input(releaseInputs.diff)
      .output(versionDiff)
      .query(({ ctx, input }) => diffVersions(deps, ctx.principal, input)),
  });

export const gcRouter = (deps: Deps) =>
  router({
    /** Admin: retire old versions and free the store (see services/gc.ts). */
    run: authedProcedure
      .input(releaseInputs.gc)
      .output(gcReport)
      .mutation(({ ctx, input }) => collectGarbage(deps, ctx.principal, input)),
  });
