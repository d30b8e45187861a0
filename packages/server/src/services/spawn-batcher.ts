/**
 * Group commit for spawns. Every spawn is a durable commit (a VM will hold a credential for
 * the row: no `synchronous_commit = off`), and a commit waits for the WAL flush: one commit
 * per spawn made 500 concurrent spawns queue 50 deep on each pooled connection. Here the
 * spawns that arrive in the same turn of the event loop, or while earlier batches are in
 * flight, go to PostgreSQL as ONE insert statement: one transaction, one commit, each caller
 * still getting its own row (and so its own token and metadata).
 *
 * Validation and authorization happen before a spawn is queued (services/spawn.ts), so
 * a bad request never reaches a batch. Should the batch statement still fail (a row the
 * database refuses), its items are retried one by one: one poisoned row fails only its own
 * caller. Nothing is retried after a commit, so nothing is inserted twice.
 */
import type { DbOrTx } from '../db/client.js';
import { type ExecutionToSpawn, type SpawnedExecution, insertSpawnedExecutions } from '../db/queries/executions.js';

type Waiting = {
  item: ExecutionToSpawn;
  resolve: (spawned: SpawnedExecution | undefined) => void;
  reject: (err: unknown) => void;
};

export type SpawnBatcherOptions = {
  /** Most spawns in one statement (spawnMany's limit, too). */
  maxBatch: number;
  /**
   * Batches in flight at once per workflow. While they are, new spawns queue and go together
   * in the next: the busier the workflow, the bigger the batches. Two keep one batch filling
   * while one commits.
   */
  maxInFlight: number;
};

export const SPAWN_BATCH_DEFAULTS: SpawnBatcherOptions = { maxBatch: 1000, maxInFlight: 2 };

/** The spawns of one workflow: its own queue and batches in flight. */
type Lane = { queue: Waiting[]; inFlight: number; scheduled: boolean };

/**
 * Batches are per workflow: a batch reads its workflow row FOR KEY SHARE, so a release
 * change or gc holding that row FOR UPDATE delays that workflow's spawns only, never
 * another workflow's.
 */
export class SpawnBatcher {
  #lanes = new Map<string, Lane>();
  /** Batches sent so far and the spawns in them (for tests and diagnostics). */
  readonly stats = { batches: 0, spawns: 0, retriedSingly: 0 };

  constructor(
    private readonly db: DbOrTx,
    private readonly opts: SpawnBatcherOptions = SPAWN_BATCH_DEFAULTS,
  ) {}

  /** Inserts one execution, together with the spawns around it; undefined when the workflow has no active version. */
  spawn(item: ExecutionToSpawn): Promise<SpawnedExecution | undefined> {
    let lane = this.#lanes.get(item.workflowId);
    if (!lane) {
      lane = { queue: [], inFlight: 0, scheduled: false };
      this.#lanes.set(item.workflowId, lane);
    }
    const joined = lane;
    return new Promise((resolve, reject) => {
      joined.queue.push({ item, resolve, reject });
      this.#schedule(item.workflowId, joined);
    });
  }

  /** Flushes after the current turn of the event loop: every spawn parsed in it joins the batch. */
  #schedule(workflowId: string, lane: Lane): void {
    if (lane.scheduled || lane.inFlight >= this.opts.maxInFlight) return;
    if (lane.queue.length === 0) {
      if (lane.inFlight === 0) this.#lanes.delete(workflowId);
      return;
    }
    lane.scheduled = true;
    setImmediate(() => {
      lane.scheduled = false;
      while (lane.queue.length > 0 && lane.inFlight < this.opts.maxInFlight) {
        const batch = lane.queue.splice(0, this.opts.maxBatch);
        lane.inFlight++;
        void this.#send(batch).finally(() => {
          lane.inFlight--;
          this.#schedule(workflowId, lane);
        });
      }
    });
  }

  async #send(batch: Waiting[]): Promise<void> {
    this.stats.batches++;
    this.stats.spawns += batch.length;
    try {
      const spawned = await insertSpawnedExecutions(
        this.db,
        batch.map((w) => w.item),
      );
      for (const [i, w] of batch.entries()) w.resolve(spawned[i]);
      return;
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
    }
    // The statement failed as a whole (nothing was inserted): each item alone, so only the bad one fails.
    this.stats.retriedSingly += batch.length;
    await Promise.all(
      batch.map(async (w) => {
        try {
          const [spawned] = await insertSpawnedExecutions(this.db, [w.item]);
          w.resolve(spawned);
        } catch (err) {
          w.reject(err);
        }
      }),
    );
  }
}
