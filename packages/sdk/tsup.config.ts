import { defineConfig } from 'tsup';

// One build for the published package: ESM for Node 20, with .d.ts bundled so they
// import nothing from the server's sources (the AppRouter type is inlined).
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    contract: 'src/contract/index.ts',
    orchestrator: 'src/orchestrator/index.ts',
    'bundle-rules': 'src/bundle-rules/index.ts',
    client: 'src/client.ts',
    metadata: 'src/contract/metadata.ts',
    signing: 'src/signing/index.ts',
    cli: 'src/cli/main.ts',
  },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: {
    // The server's sources, read for the AppRouter type, import the SDK by its own name: the
    // same source files as the entries, not a second copy the declaration bundler would misread.
    compilerOptions: { baseUrl: '.', paths: { '@swarm/sdk/bundle-rules': ['./src/bundle-rules/index.ts'] } },
    entry: {
      index: 'src/index.ts',
      contract: 'src/contract/index.ts',
      orchestrator: 'src/orchestrator/index.ts',
      'bundle-rules': 'src/bundle-rules/index.ts',
      client: 'src/client.ts',
      metadata: 'src/contract/metadata.ts',
      signing: 'src/signing/index.ts',
    },
  },
  clean: true,
  sourcemap: true,
  splitting: true,
});
