import type { Deps } from '../services/context.js';
import { router, routerOf } from './init.js';
import type { Procedure } from './procedure.js';
import { bundlesProcedures } from './routers/bundles.js';
import { executionsProcedures, watchExecution } from './routers/executions.js';
import { keysProcedures } from './routers/keys.js';
import { gcProcedures, releasesProcedures } from './routers/releases.js';
import { systemProcedures } from './routers/system.js';
import { tenantsProcedures } from './routers/tenants.js';
import { tokensProcedures } from './routers/tokens.js';
import { versionsProcedures } from './routers/versions.js';
import { workflowsProcedures } from './routers/workflows.js';

/**
 * The API: every query and mutation by path (`workflows.get`), as http/trpc-native.ts calls
 * them, and the tRPC router built from the same tables (plus the subscription).
 */
export function createApi(deps: Deps) {
  const tables = {
    tenants: tenantsProcedures(deps),
    workflows: workflowsProcedures(deps),
    bundles: bundlesProcedures(deps),
    versions: versionsProcedures(deps),
    tokens: tokensProcedures(deps),
    executions: executionsProcedures(deps),
    releases: releasesProcedures(deps),
    gc: gcProcedures(deps),
    system: systemProcedures(deps),
    keys: keysProcedures(deps),
  };
  const appRouter = router({
    tenants: routerOf(tables.tenants),
    workflows: routerOf(tables.workflows),
    bundles: routerOf(tables.bundles),
    versions: routerOf(tables.versions),
    tokens: routerOf(tables.tokens),
    executions: routerOf(tables.executions, { watch: watchExecution(deps) }),
    releases: routerOf(tables.releases),
    gc: routerOf(tables.gc),
    system: routerOf(tables.system),
    keys: routerOf(tables.keys),
  });
  const procedures = new Map<string, Procedure>(
    Object.entries(tables).flatMap(([namespace, table]) =>
      Object.entries(table).map(([name, procedure]): [string, Procedure] => [`${namespace}.${name}`, procedure]),
    ),
  );
  return { router: appRouter, procedures };
}

export const createAppRouter = (deps: Deps) => createApi(deps).router;

/** The API's type, imported (as a type only) by the SDK's client. */
export type AppRouter = ReturnType<typeof createAppRouter>;
