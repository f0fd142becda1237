// Work the master hands out in heartbeat replies (wire-spec.md §11.1, "Heartbeats"): COPY a replica
// to another keeper, DELETE a replica, VERIFY a replica now. Tasks wait in a bounded queue and run a
// few at a time; each ends in one TASK_RESULT that stays pending until a heartbeat carrying it was
// acknowledged. Copies are paced by a token bucket so that repair never starves client traffic.

import { DfsError, type ErrorCode } from '../wire/errors.js';
import type { Decoded } from '../wire/fields.js';
import { TASK_RESULT, TaskKind } from '../protocol/ops.js';
import { TokenBucket } from '../util/token-bucket.js';
import type { ChunkStore } from './chunk-store.js';
import type { DamagedReplicas } from './damaged-replicas.js';
import type { Task } from './heartbeat.js';
import type { PeerPool } from './peer-pool.js';
import { DEFAULT_STALL_MS, Forwarder } from './write-pipeline.js';

export type TaskResult = Decoded<typeof TASK_RESULT>;

/** Tasks run at once. */
export const DEFAULT_TASK_CONCURRENCY = 4;
/** Tasks waiting to run; beyond it a task is answered UNAVAILABLE at once. */
export const DEFAULT_TASK_QUEUE = 1024;
/** Bytes per second all COPY tasks together may send: 100 MiB/s. */
export const DEFAULT_REPAIR_BANDWIDTH = 100 * 1024 * 1024;
/**
 * A task that waited this long in the queue is answered DEADLINE_EXCEEDED without running: the
 * master gives up on a task after 60 s and may have decided otherwise since.
 */
export const TASK_QUEUE_EXPIRY_MS = 50_000;
/** Most results carried by one heartbeat; the rest go in the next ones. */
export const MAX_RESULTS_PER_HEARTBEAT = 1024;
/** Bytes handed to the target per paced step of a copy. */
const COPY_PIECE = 256 * 1024;
/** Longest message kept in a result. */
const MAX_MESSAGE = 500;

export interface TaskRunnerOptions {
  store: ChunkStore;
  peers: PeerPool;
  damaged: DamagedReplicas;
  /** Tasks run at once. Default 4. */
  concurrency?: number;
  /** Tasks waiting to run. Default 1024. */
  queueLimit?: number;
  /** Bytes per second for COPY, all copies together. Default 100 MiB/s. */
  repairBandwidth?: number;
  /** A copy whose target takes no bytes (or does not answer) for this long fails. Default 30 s. */
  stallMs?: number;
  /** Called when a result is ready, to send a heartbeat early. */
  onResult?: () => void;
  log?: (line: string) => void;
}

type Outcome = { status: ErrorCode | string; message?: string };

interface Queued {
  task: Task;
  at: number;
}

export class TaskRunner {
  private readonly queue: Queued[] = [];
  /** Task ids queued or running: a task handed out twice is done once. */
  private readonly known = new Set<number>();
  private readonly results: TaskResult[] = [];
  private readonly bucket: TokenBucket;
  private readonly controller = new AbortController();
  private readonly idle: Set<Promise<void>> = new Set();
  private active = 0;
  private readonly concurrency: number;
  private readonly queueLimit: number;
  /** Tasks finished (answered) since start. */
  finished = 0;

  constructor(private readonly options: TaskRunnerOptions) {
    this.concurrency = options.concurrency ?? DEFAULT_TASK_CONCURRENCY;
    this.queueLimit = options.queueLimit ?? DEFAULT_TASK_QUEUE;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new DfsError('INVALID_ARGUMENT', `task concurrency must be a positive integer, got ${this.concurrency}`);
    }
    if (!Number.isInteger(this.queueLimit) || this.queueLimit < 0) {
      throw new DfsError('INVALID_ARGUMENT', `task queue limit must be a non-negative integer, got ${this.queueLimit}`);
    }
    this.bucket = new TokenBucket(options.repairBandwidth ?? DEFAULT_REPAIR_BANDWIDTH);
  }

  /** Tasks waiting to run. */
  get queued(): number {
    return this.queue.length;
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Queues tasks from a heartbeat reply; those beyond the queue are answered UNAVAILABLE at once. */
  accept(tasks: readonly Task[]): void {
    for (const task of tasks) {
      if (this.known.has(task.taskId)) continue;
      if (this.controller.signal.aborted) {
        this.finish(task, 'UNAVAILABLE', 'the keeper is shutting down');
        continue;
      }
      // Free slots take tasks at once; only those that must wait need room in the queue.
      if (this.queue.length >= this.queueLimit + Math.max(0, this.concurrency - this.active)) {
        this.finish(task, 'UNAVAILABLE', `task queue full: ${this.queue.length} tasks waiting, ${this.active} running`);
        continue;
      }
      this.known.add(task.taskId);
      this.queue.push({ task, at: Date.now() });
    }
    this.pump();
  }

  /**
   * A new copy of this chunk is arriving (a repair or a pipeline write): a DELETE of it still waiting
   * in the queue was decided before the copy was wanted, so it is answered CANCEL instead of run.
   * The master keeps the garbage record and decides again.
   */
  cancelDeletes(chunkId: string): number {
    let cancelled = 0;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const { task } = this.queue[i]!;
      if (task.kind !== TaskKind.DELETE || task.chunkId !== chunkId) continue;
      this.queue.splice(i, 1);
      this.finish(task, 'CANCEL', `a new copy of chunk ${chunkId} arrived before the deletion ran`);
      cancelled++;
    }
    return cancelled;
  }

  /** Results for the next heartbeat, oldest first. */
  outbox(max = MAX_RESULTS_PER_HEARTBEAT): TaskResult[] {
    return this.results.slice(0, max);
  }

  /** A heartbeat carrying these results was acknowledged: they are delivered. */
  acknowledged(delivered: readonly TaskResult[]): void {
    const done = new Set(delivered);
    let kept = 0;
    for (const r of this.results) if (!done.has(r)) this.results[kept++] = r;
    this.results.length = kept;
    if (kept > 0) this.options.onResult?.();
  }

  /** Stops taking tasks, answers the queued ones UNAVAILABLE and cancels those running. */
  async close(): Promise<void> {
    this.controller.abort();
    for (const { task } of this.queue.splice(0)) this.finish(task, 'UNAVAILABLE', 'the keeper is shutting down');
    await Promise.all(this.idle);
  }

  private pump(): void {
    while (this.active < this.concurrency && this.queue.length > 0) {
      const { task, at } = this.queue.shift()!;
      if (Date.now() - at > TASK_QUEUE_EXPIRY_MS) {
        this.finish(task, 'DEADLINE_EXCEEDED', `waited ${Date.now() - at} ms in the keeper's queue; not run`);
        continue;
      }
      this.active++;
      const run = this.run(task).then(
        (outcome) => this.finish(task, outcome.status, outcome.message),
        (err: unknown) => {
          const e = err instanceof DfsError ? err : new DfsError('INTERNAL_ERROR', (err as Error)?.message ?? String(err));
          this.finish(task, e.code, e.message);
        },
      ).finally(() => {
        this.active--;
        this.idle.delete(run);
        this.pump();
      });
      this.idle.add(run);
    }
  }

  private finish(task: Task, status: string, message?: string): void {
    this.known.delete(task.taskId);
    this.finished++;
    const result: TaskResult = { taskId: task.taskId, status };
    if (message !== undefined && status !== 'NO_ERROR') result.message = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message;
    this.results.push(result);
    this.options.onResult?.();
  }

  private run(task: Task): Promise<Outcome> {
    switch (task.kind) {
      case TaskKind.COPY:
        return this.copy(task);
      case TaskKind.DELETE:
        return this.delete(task);
      case TaskKind.VERIFY:
        return this.verify(task);
      default:
        return Promise.resolve({ status: 'INVALID_ARGUMENT', message: `unknown task kind ${task.kind}` });
    }
  }

  /**
   * COPY: the replica is read whole and verified before a byte leaves (a damaged one is quarantined
   * instead), then sent to the target with WRITE_CHUNK and no downstream, paced by the bucket.
   */
  private async copy(task: Task): Promise<Outcome> {
    const { store, damaged } = this.options;
    const target = task.targetAddress ?? '';
    if (target === '') return { status: 'INVALID_ARGUMENT', message: `COPY of chunk ${task.chunkId} names no target address` };
    const info = store.stat(task.chunkId);
    if (info === undefined) return { status: 'NOT_FOUND', message: `chunk ${task.chunkId} is not stored on this keeper` };
    let data: Buffer;
    try {
      ({ data } = await store.read(task.chunkId));
    } catch (err) {
      await damaged.check(task.chunkId, 'copy', err);
      throw err;
    }
    const signal = this.controller.signal;
    const forward = new Forwarder(this.options.peers, {
      chunkId: info.id, size: info.size, sha256: info.sha256, downstream: [target],
    }, this.options.stallMs ?? DEFAULT_STALL_MS);
    await forward.open();
    // Shutting down must not wait for a slow target's stall deadline.
    const onAbort = () => forward.abort(new DfsError('CANCEL', 'the keeper is shutting down'), '');
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (let at = 0; at < data.length; at += COPY_PIECE) {
        const piece = data.subarray(at, at + COPY_PIECE);
        await this.bucket.take(piece.length, signal);
        if (forward.failed) break;
        const full = forward.write(piece);
        if (full) await full;
      }
      forward.end();
    } catch (err) {
      const e = err instanceof DfsError ? err : new DfsError('CANCEL', 'the keeper is shutting down');
      forward.abort(e, '');
      signal.removeEventListener('abort', onAbort);
      throw e;
    }
    const [ack] = await forward.acks().finally(() => signal.removeEventListener('abort', onAbort));
    if (ack === undefined) return { status: 'INTERNAL_ERROR', message: `keeper ${target} gave no acknowledgement` };
    if (ack.status !== 'NO_ERROR') {
      return { status: ack.status, message: `keeper ${target} did not store chunk ${info.id}: ${ack.message ?? ack.status}` };
    }
    if (task.targetId && ack.keeperId && ack.keeperId !== task.targetId) {
      // The copy is durable, but on a keeper the master does not expect at that address.
      return { status: 'INVALID_ARGUMENT', message: `${target} is keeper ${ack.keeperId}, not the target ${task.targetId}; the copy landed there` };
    }
    return { status: 'NO_ERROR' };
  }

  /** DELETE: a replica already gone is success. */
  private async delete(task: Task): Promise<Outcome> {
    await this.options.store.delete(task.chunkId);
    return { status: 'NO_ERROR' };
  }

  /** VERIFY: re-hash in the workers now; a damaged replica is quarantined and reported as corrupt. */
  private async verify(task: Task): Promise<Outcome> {
    const { store, damaged } = this.options;
    if (!store.has(task.chunkId)) return { status: 'NOT_FOUND', message: `chunk ${task.chunkId} is not stored on this keeper` };
    try {
      await store.verify(task.chunkId);
    } catch (err) {
      await damaged.check(task.chunkId, 'verify', err);
      throw err;
    }
    return { status: 'NO_ERROR' };
  }
}
