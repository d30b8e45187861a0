import type { Deps } from '../services/context.js';
import { router } from './init.js';
import { bundlesRouter } from './routers/bundles.js';
import { executionsRouter } from './routers/executions.js';
import { keysRouter } from './routers/keys.js';
import { gcRouter, releasesRouter } from './routers/releases.js';
import { tenantsRouter } from './routers/tenants.js';
import { systemRouter } from './routers/system.js';
import { tokensRouter } from './routers/tokens.js';
import { versionsRouter } from './routers/versions.js';
import { workflowsRouter } from './routers/workflows.js';

export const createAppRouter = (deps: Deps) =>
  router({
    tenants: tenantsRouter(deps),
    workflows: workflowsRouter(deps),
    bundles: bundlesRouter(deps),
    versions: versionsRouter(deps),
    tokens: tokensRouter(deps),
    executions: executionsRouter(deps),
    releases: releasesRouter(deps),
    gc: gcRouter(deps),
    system: systemRouter(deps),
    keys: keysRouter(deps),
  });

/** The API's type, imported (as a type only) by the SDK's client. */
export type AppRouter = ReturnType<typeof createAppRouter>;
