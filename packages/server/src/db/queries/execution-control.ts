/**
 * What the registry does to an execution without its agent: heartbeats, cancel, and the
 * reaper's endings (abandoned, lost, timed out, cancelled past the grace period). Each
 * ending writes a `registry_note` event saying why, in the same transaction, after the
 * row lock: the agent's appends take the same lock, so the note's sequence number (the
 * next after the agent's last) cannot collide, and no agent event follows it.
 */
import { and, eq, inArray, sql } from 'drizzle-orm';
import type { ExecutionStatus } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { executionEvents, executions } from '../schema.js';
import { type ExecutionRow, REVOKED } from './executions.js';

/** Records a heartbeat of a live execution; its cancel flag, or undefined when it has ended. */
export async function recordHeartbeat(db: DbOrTx, id: string): Promise<{ cancelRequested: boolean } | undefined> {
  const [row] = await db
    .update(executions)
    .set({ lastHeartbeatAt: sql`now()` })
    .where(and(eq(executions.id, id), inArray(executions.status, ['pending', 'booting', 'running'])))
    .returning({ cancelRequestedAt: executions.cancelRequestedAt });
  return row && { cancelRequested: row.cancelRequestedAt !== null };
}

/** The row of a session just started: what the agent is told. */
export async function sessionSettings(db: DbOrTx, id: string): Promise<Pick<ExecutionRow, 'timeoutSeconds' | 'outputMaxBytes'>> {
  const [row] = await db
    .update(executions)
    .set({ lastHeartbeatAt: sql`now()` })
    .where(eq(executions.id, id))
    .returning({ timeoutSeconds: executions.timeoutSeconds, outputMaxBytes: executions.outputMaxBytes });
  return row ?? { timeoutSeconds: null, outputMaxBytes: 0 };
}

export async function markCancelRequested(tx: Tx, id: string): Promise<void> {
  await tx.update(executions).set({ cancelRequestedAt: sql`now()` }).where(eq(executions.id, id));
}

export type RegistryEnding = {
  status: Extract<ExecutionStatus, 'failed' | 'cancelled'>;
  reason: string;
  message: string;
};

/**
 * Ends a locked, unfinished execution: status, reason, credentials revoked, and a
 * `registry_note` event after the agent's last.
 */
export async function endByRegistry(tx: Tx, id: string, ending: RegistryEnding): Promise<void> {
  await tx
    .update(executions)
    .set({ ...REVOKED, status: ending.status, failureReason: ending.reason, finishedAt: sql`now()` })
    .where(eq(executions.id, id));
  await tx.execute(sql`
    insert into ${executionEvents} (execution_id, seq, type, data)
    select ${id}::uuid, coalesce(max(seq), -1) + 1, 'registry_note',
           jsonb_build_object('status', ${ending.status}::text, 'reason', ${ending.reason}::text, 'message', ${ending.message}::text)
    from ${executionEvents} where execution_id = ${id}::uuid`);
}

/** Why the reaper ends an execution, and which ones qualify (by the database's clock). */
export type ReapRule = { ending: RegistryEnding; where: ReturnType<typeof sql> };

export function reapRules(t: { abandonedAfterMs: number; lostAfterMs: number; cancelGraceMs: number }): ReapRule[] {
  const secs = (ms: number) => sql`make_interval(secs => ${ms / 1000})`;
  return [
    {
      ending: { status: 'cancelled', reason: 'cancelled', message: 'cancelled; the agent did not report within the grace period' },
      where: sql`${executions.cancelRequestedAt} < now() - ${secs(t.cancelGraceMs)}`,
    },
    {
      ending: { status: 'failed', reason: 'timed_out', message: 'ran past its timeout; the agent did not report within the grace period' },
      where: sql`${executions.status} = 'running' and ${executions.timeoutSeconds} is not null
        and ${executions.startedAt} + make_interval(secs => ${executions.timeoutSeconds}) < now() - ${secs(t.cancelGraceMs)}`,
    },
    {
      ending: { status: 'failed', reason: 'lost', message: `no heartbeat for ${t.lostAfterMs / 1000} s: the VM or its agent is gone` },
      where: sql`${executions.status} in ('booting', 'running') and ${executions.lastHeartbeatAt} < now() - ${secs(t.lostAfterMs)}`,
    },
    {
      ending: {
        status: 'failed',
        reason: 'abandoned',
        message: `still pending or booting ${t.abandonedAfterMs / 1000} s after the spawn: the VM never started or never reported`,
      },
      where: sql`${executions.status} in ('pending', 'booting') and ${executions.createdAt} < now() - ${secs(t.abandonedAfterMs)}`,
    },
  ];
}

/** Ends every unfinished execution a rule picks, one transaction each; how many per reason. */
export async function reapExecutions(db: DbOrTx, rules: ReapRule[], batch = 100): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const rule of rules) {
    const candidates = await db
      .select({ id: executions.id })
      .from(executions)
      .where(and(inArray(executions.status, ['pending', 'booting', 'running']), rule.where))
      .limit(batch);
    for (const { id } of candidates) {
      const ended = await db.transaction(async (tx) => {
        // Checked again under the lock: the agent's final report may have come first.
        const [row] = await tx
          .select({ id: executions.id })
          .from(executions)
          .where(and(eq(executions.id, id), inArray(executions.status, ['pending', 'booting', 'running']), rule.where))
          .for('update');
        if (!row) return false;
        await endByRegistry(tx, id, rule.ending);
        return true;
      });
      if (ended) counts[rule.ending.reason] = (counts[rule.ending.reason] ?? 0) + 1;
    }
  }
  return counts;
}
