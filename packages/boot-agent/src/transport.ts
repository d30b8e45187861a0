/**
 * Node's http client for a URL's protocol, each loaded on first use (builtins.ts):
 * `node:https` brings tls, OpenSSL's secure-context setup and their JS with it, which every
 * boot would otherwise pay for under TCG although the VM's store and registry are plain
 * http through QEMU's forwards.
 */
import type http from 'node:http';
import { builtin } from './builtins.js';

export type HttpClient = Pick<typeof http, 'request' | 'get' | 'Agent'>;

export function clientFor(protocol: string): HttpClient {
  return builtin(protocol === 'https:' ? 'node:https' : 'node:http');
}
