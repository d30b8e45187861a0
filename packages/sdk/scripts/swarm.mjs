#!/usr/bin/env node
/**
 * `pnpm swarm …` in the workspace: the CLI from its bundle (cli-bundle.mjs), rebuilt first
 * when a source changed, so it starts like the published `swarm` binary and never runs stale.
 */
import { pathToFileURL } from 'node:url';
import { CLI_BUNDLE, ensureCliBundle } from './cli-bundle.mjs';

await ensureCliBundle();
await import(pathToFileURL(CLI_BUNDLE).href);
