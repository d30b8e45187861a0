/** Authorization rules, in one place. Another tenant's resources are "not found", never "forbidden". */
import { RegistryError, notFound } from '../errors.js';
import type { Principal } from './context.js';

export function requireAdmin(p: Principal): void {
  if (p.scope !== 'admin') throw new RegistryError('FORBIDDEN', 'this needs an admin token');
}

/** Reading: admins and the orchestrator see everything, a tenant token only its tenant, an agent token nothing. */
export function assertCanRead(p: Principal, tenantId: string, what: string): void {
  if ((p.scope === 'tenant' && p.tenantId !== tenantId) || p.scope === 'agent') throw notFound(what);
}

/** Spawning and reading executions: the orchestrator's job (and admins'). */
export function requireOrchestrator(p: Principal): void {
  if (p.scope !== 'admin' && p.scope !== 'orchestrator') throw new RegistryError('FORBIDDEN', 'this needs an orchestrator or admin token');
}

/** Changing a tenant's workflows: admins and that tenant's tokens; the orchestrator only reads. */
export function assertCanWrite(p: Principal, tenantId: string, what: string): void {
  assertCanRead(p, tenantId, what);
  if (p.scope === 'orchestrator') {
    throw new RegistryError('FORBIDDEN', 'orchestrator tokens can read and resolve, not change workflows', 'use an admin or tenant token');
  }
}
