/**
 * Node builtins the agent loads on first use instead of at start: `node:https` (tls and
 * OpenSSL's setup, for https URLs only), and `node:http` and `node:child_process`, which
 * cannot be loaded while Node builds a start-up snapshot (nodejs/node#50924): modules
 * reachable from main.ts import them only through here (docs/boot-agent.md).
 */
import type ChildProcess from 'node:child_process';
import type Http from 'node:http';
import { createRequire } from 'node:module';

type Builtins = { 'node:http': typeof Http; 'node:https': typeof Http; 'node:child_process': typeof ChildProcess };

// Any absolute base resolves builtins; import.meta.url is not there in the snapshot's CommonJS build.
const load = createRequire('/');

export function builtin<K extends keyof Builtins>(id: K): Builtins[K] {
  return load(id) as Builtins[K];
}
