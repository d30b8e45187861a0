/**
 * Node's http client for a URL's protocol, https loaded only on first use: `node:https`
 * brings tls, OpenSSL's secure-context setup and their JS with it, which every boot would
 * otherwise pay for under TCG although the VM's store and registry are plain http
 * through QEMU's forwards.
 */
import http from 'node:http';
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

export type HttpClient = Pick<typeof http, 'request' | 'get'>;

export function clientFor(protocol: string): HttpClient {
  return protocol === 'https:' ? (load('node:https') as HttpClient) : http;
}
