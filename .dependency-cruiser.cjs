/**
 * `pnpm check:imports`: no import circle in packages/*\/src (issue #11).
 *
 * dependency-cruiser rather than madge: it reads TypeScript with the compiler itself, so
 * NodeNext's `./x.js` specifiers resolve to `./x.ts` through the tsconfig, and with
 * `tsPreCompilationDeps` it keeps type-only imports, which count here (the circle
 * services/context.ts → release-cache.ts → workflows.ts → tenants.ts → access.ts →
 * context.ts was closed by `import type` edges: without tsPreCompilationDeps this check
 * passes on it). madge would need its resolver configured to map `./x.js` to `./x.ts`,
 * and an import it cannot resolve only drops out of its graph with a warning; here an
 * unresolvable import fails the check (not-unresolvable), so a resolver gap cannot hide
 * a circle. dependency-cruiser 17 is the last line that runs on Node 20.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Modules depend one way: a circle (type-only imports included) means a layer reaches back up.',
      from: { path: '^packages/[^/]+/src/' },
      to: { circular: true },
    },
    {
      name: 'boot-agent-lean',
      severity: 'error',
      comment:
        'Every boot parses and compiles what the boot agent imports (docs/boot-agent.md, "The lean boot path"): no SDK client (tRPC, undici), no API contract in classic zod; the metadata schema is zod/mini.',
      from: { path: '^packages/boot-agent/src/' },
      to: {
        reachable: true,
        path: [
          '^packages/sdk/src/(client|index|orchestrator/|cli/)',
          '^packages/sdk/src/contract/(?!metadata[.]ts$|patterns[.]ts$)',
          'node_modules/(undici|@trpc|eventsource)/',
          'node_modules/zod/(index|v4/classic/)',
        ],
      },
    },
    {
      name: 'boot-agent-snapshot-safe',
      severity: 'error',
      comment:
        'The agent is built into a start-up snapshot, which cannot load node:http or node:child_process (nodejs/node#50924): load them on first use through src/builtins.ts (docs/boot-agent.md).',
      from: { path: '^packages/boot-agent/src/', pathNot: '^packages/boot-agent/src/builtins[.]ts$' },
      to: { path: '^(node:)?(http|https|child_process)$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'not-unresolvable',
      severity: 'error',
      comment: 'An import the checker cannot resolve is one it cannot check for circles.',
      from: { path: '^packages/[^/]+/src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.base.json' },
    // Follow workspace packages (@swarm/sdk → packages/sdk/src) but not third-party code.
    doNotFollow: { path: 'node_modules/(?!@swarm/)' },
    exclude: { path: '(^|/)(test|dist)/' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
    },
  },
};
