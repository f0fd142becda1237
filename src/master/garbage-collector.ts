// Garbage collection in two phases. Marking is done by the state machine: chunks of aborted,
// abandoned, deleted and overwritten files, replicas dropped by repair, and unused copies found in
// chunk reports become garbage records with a time. Deleting happens here, after a grace period, and
// only after checking again that no committed file and no open upload uses the copy on that keeper.
// A keeper confirms each deletion; only then is the record forgotten (journaled).

import { TaskKind } from '../protocol/ops.js';
import type { Entry, GarbageRelease } from './entries.js';
import type { GarbageChunk, MetadataState } from './namespace.js';
import type { Task, TaskBook } from './tasks.js';

/** Garbage records looked at per tick. */
const RECORDS_PER_TICK = 20_000;

export interface GarbageOptions {
  /** Garbage younger than this is left alone, for reads in flight and for an operator's second thoughts. Default 10 min. */
  graceMs?: number;
  /** An upload with no activity for this long is aborted, and its chunks become garbage. Default 30 min. */
  uploadTimeoutMs?: number;
  /** DELETE tasks in flight per keeper. Default 256. */
  deletesPerKeeper?: number;
}

export interface GarbageContext {
  state: MetadataState;
  tasks: TaskBook;
  commit: (entry: Entry) => Promise<unknown>;
  alive: (keeperId: string) => boolean;
  /** True while a committed chunk has fewer good replicas than it wants (or may have, just after a start). */
  isShort: (chunkId: string) => boolean;
  /** Asks for a copy to be verified and adopted as a replica. */
  offerCopy: (chunkId: string, keeperId: string) => void;
  log: (line: string) => void;
  now?: () => number;
}

export class GarbageCollector {
  readonly graceMs: number;
  private readonly uploadTimeoutMs: number;
  private readonly deletesPerKeeper: number;
  private readonly now: () => number;
  private confirmed: GarbageRelease[] = [];
  private cursor: Iterator<GarbageChunk> | null = null;
  private deleted = 0;

  constructor(private readonly ctx: GarbageContext, options: GarbageOptions = {}) {
    this.graceMs = options.graceMs ?? 600_000;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? 1_800_000;
    this.deletesPerKeeper = options.deletesPerKeeper ?? 256;
    this.now = ctx.now ?? Date.now;
  }

  /** Copies deleted by keepers since the master started. */
  get deletedCopies(): number {
    return this.deleted;
  }

  /** A DELETE result from a keeper. */
  onResult(task: Task, status: string): void {
    if (status === 'NO_ERROR') {
      this.confirmed.push({ id: task.chunkId, keepers: [task.keeperId] });
      this.deleted++;
    } else {
      this.ctx.log(`keeper ${task.keeperId} could not delete garbage chunk ${task.chunkId}: ${status}; will retry`);
    }
  }

  async tick(): Promise<void> {
    const { state, tasks } = this.ctx;
    const now = this.now();
    for (const u of state.uploads()) {
      if (u.touched + this.uploadTimeoutMs <= now) {
        this.ctx.log(`upload ${u.uploadId} of ${u.path} idle since ${new Date(u.touched).toISOString()}: aborted`);
        await this.ctx.commit({ type: 'abort-upload', uploadId: u.uploadId, mtime: now }).catch(() => undefined);
      }
    }
    const release = this.confirmed;
    this.confirmed = [];
    // A slice of the records per tick, from where the last tick stopped: after deleting a million
    // chunks the walk must not hold the master up for seconds at a time.
    this.cursor ??= state.garbageEntries();
    for (let seen = 0; seen < RECORDS_PER_TICK; seen++) {
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = null;
        break;
      }
      const g = next.value;
      if (g.since + this.graceMs > now) continue;
      for (const keeperId of g.keepers) {
        // Phase two: look again. A copy that a file or an upload uses where it is never goes.
        const owner = state.chunkPlacement(g.id);
        if (state.isUploading(g.id) || owner?.chunk.replicas.includes(keeperId)) {
          release.push({ id: g.id, keepers: [keeperId] });
          continue;
        }
        // A copy of a committed chunk that is short of replicas may be the last good one: offer it
        // for adoption instead of deleting it.
        if (owner !== undefined && this.ctx.isShort(g.id)) {
          this.ctx.offerCopy(g.id, keeperId);
          continue;
        }
        if (!this.ctx.alive(keeperId) || tasks.has(TaskKind.DELETE, g.id, keeperId)) continue;
        // A copy on its way there would be the one deleted: wait until it is recorded.
        if (tasks.copyingTo(g.id, keeperId)) continue;
        if (tasks.deletesOn(keeperId) >= this.deletesPerKeeper) continue;
        tasks.add({ kind: TaskKind.DELETE, purpose: 'collect', chunkId: g.id, keeperId, bytes: 0 });
      }
    }
    if (release.length > 0) {
      await this.ctx.commit({ type: 'forget-garbage', chunks: release }).catch((err: Error) => {
        this.ctx.log(`forgetting collected garbage failed: ${err.message}`);
      });
    }
  }
}
