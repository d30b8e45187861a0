/**
 * `pnpm check:imports`: no import circle in packages/*\/src (issue #11).
 *
 * dependency-cruiser rather than madge: it reads TypeScript with the compiler itself, so
 * NodeNext's `./x.js` specifiers resolve to `./x.ts` through the tsconfig, and with
 * `tsPreCompilationDeps` it keeps type-only imports, which count here (the circle
 * services/context.ts → release-cache.ts → workflows.ts → tenants.ts → access.ts →
 * context.ts was made of `import type` alone). madge needs extra resolver settings for
 * both and silently reports "no circle" when a specifier does not resolve; here an
 * unresolvable import is an error of its own (not-unresolvable).
 * dependency-cruiser 17 is the last line that runs on Node 20.
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
