// Self-healing: brings every committed chunk back to its replication factor by copies keeper to
// keeper, trims copies beyond it, reconciles keepers' chunk reports, and acts on corruption reports.
//
// Everything here is soft state recomputed from the metadata: the durable facts (which keepers hold
// which chunk) change only through journaled update-replicas and mark-garbage entries. A copy counts
// only after its source reports the target's durable acknowledgement; a replica is dropped only when
// the chunk has enough others, or when its keeper says it is gone or bad.

import { createHash } from 'node:crypto';
import { TaskKind } from '../protocol/ops.js';
import { DfsError } from '../wire/errors.js';
import type { Entry } from './entries.js';
import type { MetadataState } from './namespace.js';
import { placeReplicas, type KeeperState } from './placement.js';
import { countingReplicas, inMaintenance, modeAt, readableReplicas, type ReplicaJudge } from './replica-health.js';
import { TaskBook, type Task } from './tasks.js';

export interface RepairOptions {
  /** COPY tasks a keeper takes part in at once, as source or target. Default 4. */
  copiesPerKeeper?: number;
  /** A task without a result after this long is given up and redone. Default 60 s. */
  taskTimeoutMs?: number;
  /** Replicas on a keeper silent this long are dropped once the chunk has enough others. Default 1 h. */
  forgetDeadAfterMs?: number;
  /** Chunks examined per tick by the background sweep over all chunks. Default 20,000. */
  sweepPerTick?: number;
}

export interface RepairContext {
  state: MetadataState;
  /** Applies and journals an entry; rejects when the state machine refuses it. */
  commit: (entry: Entry) => Promise<unknown>;
  alive: (keeperId: string) => boolean;
  /** Milliseconds since the keeper's last heartbeat; Infinity if none since the master started. */
  silentForMs: (keeperId: string) => number;
  address: (keeperId: string) => string | undefined;
  /** Keepers that may take new copies (alive, accepting writes, in normal mode). */
  placementView: () => KeeperState[];
  log: (line: string) => void;
  now?: () => number;
}

export interface RepairStatus {
  underReplicated: number;
  missing: number;
  repairsInFlight: number;
  repaired: number;
  repairBytesPerS: number;
}

/** Task results as the wire carries them. */
export interface TaskResult {
  taskId: number;
  status: string;
  message?: string;
}

const RATE_WINDOW_MS = 10_000;
/** How long a chunk added to a keeper is protected from a chunk report that may predate it. */
const REPORT_RACE_MS = 60_000;
/** A target that failed a copy is not chosen again for the same chunk for this long. */
const FAILED_TARGET_MS = 30_000;
const SWEEP_EVERY_MS = 60_000;
/** Chunks examined per tick at most (dirty ones first). */
const EXAMINE_PER_TICK = 20_000;
/** A keeper holding more chunks than this has them counted by the ticks, not all at once. */
const ASSESS_INLINE_MAX = 20_000;
/** More never-heard-of chunks than this (and over a tenth of a report) stop collection from that report. */
const UNKNOWN_CHUNKS_ALARM = 64;

export class RepairScheduler {
  readonly tasks: TaskBook;
  private readonly now: () => number;
  private readonly copiesPerKeeper: number;
  private readonly taskTimeoutMs: number;
  private readonly forgetDeadAfterMs: number;
  private readonly sweepPerTick: number;

  /** Chunks below their factor, with the count of replicas that count. */
  private readonly under = new Map<string, number>();
  /** Chunks to look at on the next tick. */
  private dirty = new Set<string>();
  private sweep: Iterator<string> | null = null;
  private sweepStarted = -Infinity;
  /** Chunk id -> its COPY task in flight (one at a time per chunk). */
  private readonly copying = new Map<string, Task>();
  private readonly corrupt = new Map<string, Set<string>>();
  /** `${chunkId}:${keeperId}` -> when that replica was added: chunk reports taken before may not list it. */
  private readonly recentlyAdded = new Map<string, number>();
  /** The same additions in time order, for pruning; entries before `addedHead` are spent. */
  private readonly addedOrder: { key: string; at: number }[] = [];
  private addedHead = 0;
  /** `${chunkId}:${keeperId}` -> until when that target is avoided. */
  private readonly failedTargets = new Map<string, number>();
  /** Pages of chunk reports being received, by keeper. */
  private readonly reportPages = new Map<string, Set<string>>();
  private readonly reported = new Set<string>();
  private readonly copied: { at: number; bytes: number }[] = [];
  private repairedCount = 0;
  /** Replicas trimmed this tick, by keeper, for one log line. */
  private readonly trimmed = new Map<string, number>();
  /** Keepers whose maintenance window has ended and been acted on. */
  private readonly windowsEnded = new Set<string>();
  private busy = false;
  /** No repair decisions before this time: after a restart, keepers need a moment to check in. */
  private quietUntil: number;

  constructor(private readonly ctx: RepairContext, options: RepairOptions = {}, quietMs = 0) {
    this.now = ctx.now ?? Date.now;
    this.tasks = new TaskBook(this.now);
    this.copiesPerKeeper = options.copiesPerKeeper ?? 4;
    this.taskTimeoutMs = options.taskTimeoutMs ?? 60_000;
    this.forgetDeadAfterMs = options.forgetDeadAfterMs ?? 3_600_000;
    this.sweepPerTick = options.sweepPerTick ?? 20_000;
    this.quietUntil = this.now() + quietMs;
  }

  readonly judge: ReplicaJudge = {
    isAlive: (k) => this.ctx.alive(k),
    mode: (k) => modeAt(this.ctx.state.keeperMode(k), this.now()),
    corruptOn: (id) => this.corrupt.get(id),
    now: () => this.now(),
  };

  // ---- events ------------------------------------------------------------------------------------

  /** Look at these chunks again soon. */
  touch(chunkIds: Iterable<string>): void {
    for (const id of chunkIds) this.dirty.add(id);
  }

  /** A keeper died, came back or changed mode: every chunk it holds needs a look. */
  keeperChanged(keeperId: string): void {
    const ids = this.ctx.state.chunksOnKeeper(keeperId);
    this.touch(ids);
    // Count at once, so that STATUS is right from the moment a keeper is declared dead; a keeper
    // with very many chunks is counted by the ticks instead, a slice at a time.
    if (ids.length <= ASSESS_INLINE_MAX) for (const id of ids) this.assess(id);
  }

  /** Updates the under-replicated books for one chunk; the next tick acts on it. */
  private assess(chunkId: string): void {
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner === undefined) return;
    const counting = countingReplicas(this.judge, chunkId, owner.chunk.replicas).length;
    if (counting < owner.replication) this.under.set(chunkId, counting);
    else this.under.delete(chunkId);
  }

  /** Called after every journaled entry, to notice new replicas and under-replicated commits. */
  afterCommit(entry: Entry): void {
    const at = this.now();
    if (entry.type === 'commit-file') {
      for (const c of entry.chunks) {
        for (const k of c.replicas) this.noteAdded(c.id, k, at);
        this.dirty.add(c.id);
      }
    } else if (entry.type === 'update-replicas') {
      const corrupt = this.corrupt.get(entry.chunkId);
      for (const k of entry.add) {
        this.noteAdded(entry.chunkId, k, at);
        // A fresh, verified copy replaces the bad one the keeper had quarantined.
        corrupt?.delete(k);
      }
      if (corrupt?.size === 0) this.corrupt.delete(entry.chunkId);
      this.dirty.add(entry.chunkId);
    } else if (entry.type === 'keeper-mode') {
      this.keeperChanged(entry.id);
    }
  }

  /** A keeper stopped heartbeating: its tasks are void (a late result is ignored), and its chunks need a look. */
  keeperDied(keeperId: string): void {
    // Sent deletions and verifications stay on the books until their result or expiry: the keeper may
    // only be cut off, and still carry them out. Copies from it are given up at once.
    for (const t of this.tasks.dropKeeper(keeperId, (t) => t.kind === TaskKind.COPY)) {
      if (this.copying.get(t.chunkId) === t) this.copying.delete(t.chunkId);
    }
    this.keeperChanged(keeperId);
  }

  /** Whether the master still wants a full chunk report from this keeper. */
  wantsReport(keeperId: string): boolean {
    return !this.reported.has(keeperId) && !this.reportPages.has(keeperId);
  }

  /** A keeper restarted (its first heartbeat after silence): it will report again. */
  keeperRestarted(keeperId: string): void {
    this.reported.delete(keeperId);
    this.reportPages.delete(keeperId);
  }

  /** Forgets the pages of a report that will not be finished (its connection went away). */
  discardPartialReport(keeperId: string): void {
    this.reportPages.delete(keeperId);
  }

  async onChunkReport(keeperId: string, ids: readonly string[], final: boolean): Promise<void> {
    let pages = this.reportPages.get(keeperId);
    if (pages === undefined) this.reportPages.set(keeperId, (pages = new Set()));
    for (const id of ids) pages.add(id);
    if (!final) return;
    this.reportPages.delete(keeperId);
    await this.reconcile(keeperId, pages);
    this.reported.add(keeperId);
  }

  /**
   * A keeper holds a copy of a committed chunk that is not one of its replicas (a trimmed or
   * collected copy, a copy found in a chunk report). If the chunk lacks replicas, the copy is
   * verified on the keeper and adopted when good. Never adopted blindly: the keeper works through
   * its tasks in order, so a VERIFY sent after a DELETE of the chunk answers NOT_FOUND.
   * Returns true when a verification was asked for (or is already under way).
   */
  offerCopy(chunkId: string, keeperId: string): boolean {
    if (!this.wantsCopyFrom(chunkId, keeperId) || this.tasks.has(TaskKind.DELETE, chunkId, keeperId)) return false;
    if (this.tasks.has(TaskKind.VERIFY, chunkId, keeperId)) return true;
    return this.tasks.add({ kind: TaskKind.VERIFY, purpose: 'adopt', chunkId, keeperId, bytes: 0 }) !== undefined;
  }

  /** True when the chunk is below its factor and this live, normal keeper is not yet a replica. */
  wantsCopyFrom(chunkId: string, keeperId: string): boolean {
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner === undefined || owner.chunk.replicas.includes(keeperId)) return false;
    if (!this.ctx.alive(keeperId) || this.judge.mode(keeperId).mode !== 'normal') return false;
    return countingReplicas(this.judge, chunkId, owner.chunk.replicas).length < owner.replication;
  }

  /** True while a committed chunk has fewer counting replicas than its factor (or, after a restart, may have). */
  isShort(chunkId: string): boolean {
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner === undefined) return false;
    return this.now() < this.quietUntil || countingReplicas(this.judge, chunkId, owner.chunk.replicas).length < owner.replication;
  }

  /** A reader saw bad bytes from this keeper: ask the keeper to check, never trust the reader alone. */
  onReadCorruption(chunkId: string, keeperId: string): void {
    if (this.ctx.state.keeper(keeperId) === undefined) return;
    this.tasks.add({ kind: TaskKind.VERIFY, purpose: 'verify', chunkId, keeperId, bytes: 0 });
  }

  /** Replicas a keeper found corrupt and quarantined (its heartbeat's `corrupt` list). */
  async onCorruptReport(keeperId: string, chunkIds: readonly string[]): Promise<void> {
    for (const id of chunkIds) await this.onCorrupt(keeperId, id);
  }

  // ---- periodic work ---------------------------------------------------------------------------

  /** One round: expire tasks, examine dirty chunks and a slice of all chunks, hand out copies. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const t of this.tasks.expire(this.taskTimeoutMs)) {
        if (this.copying.get(t.chunkId) === t) this.copying.delete(t.chunkId);
        this.dirty.add(t.chunkId);
        this.ctx.log(`task ${t.taskId} (${kindName(t.kind)} of chunk ${t.chunkId} on keeper ${t.keeperId}) timed out; it will be redone`);
      }
      if (this.now() < this.quietUntil) return;
      this.noticeEndedWindows();
      // A slice of the dirty chunks per tick, so a keeper with a million chunks dying does not stall
      // the master for seconds; the rest wait for the next ticks.
      const batch = new Set<string>();
      for (const id of this.dirty) {
        if (batch.size >= EXAMINE_PER_TICK) break;
        batch.add(id);
      }
      for (const id of batch) this.dirty.delete(id);
      if (this.dirty.size === 0) this.sweepSlice(batch);
      for (const id of batch) await this.examine(id);
      if (this.trimmed.size > 0) {
        const parts = [...this.trimmed].map(([k, n]) => `${n} on ${k}`);
        this.ctx.log(`trimmed replicas beyond their chunks' replication: ${parts.join(', ')}`);
        this.trimmed.clear();
      }
      this.planCopies();
    } finally {
      this.busy = false;
    }
  }

  status(): RepairStatus {
    let missing = 0;
    for (const n of this.under.values()) if (n === 0) missing++;
    const since = this.now() - RATE_WINDOW_MS;
    while (this.copied.length > 0 && this.copied[0]!.at < since) this.copied.shift();
    const bytes = this.copied.reduce((sum, c) => sum + c.bytes, 0);
    return {
      underReplicated: this.under.size,
      missing,
      repairsInFlight: this.copying.size,
      repaired: this.repairedCount,
      repairBytesPerS: Math.round(bytes / (RATE_WINDOW_MS / 1000)),
    };
  }

  /** Schedules a move of a replica (balancing): copy to `targetId`, then drop the source's replica. */
  requestMove(chunkId: string, sourceId: string, targetId: string): boolean {
    if (this.copying.has(chunkId) || this.under.has(chunkId)) return false;
    const owner = this.ctx.state.chunkPlacement(chunkId);
    const address = this.ctx.address(targetId);
    if (owner === undefined || address === undefined || owner.chunk.replicas.includes(targetId)) return false;
    if (this.tasks.has(TaskKind.DELETE, chunkId, targetId)) return false;
    if (!owner.chunk.replicas.includes(sourceId) || !this.ctx.alive(sourceId)) return false;
    if (this.tasks.copiesOn(sourceId) >= this.copiesPerKeeper || this.tasks.copiesOn(targetId) >= this.copiesPerKeeper) return false;
    const task = this.tasks.add({
      kind: TaskKind.COPY, purpose: 'move', chunkId, keeperId: sourceId, targetId, targetAddress: address, bytes: owner.chunk.size,
    });
    if (task === undefined) return false;
    this.copying.set(chunkId, task);
    return true;
  }

  copiesOn(keeperId: string): number {
    return this.tasks.copiesOn(keeperId);
  }

  get copySlots(): number {
    return this.copiesPerKeeper;
  }

  // ---- internals -------------------------------------------------------------------------------

  /** A maintenance window that ran out with its keeper still away: its chunks need a look now. */
  private noticeEndedWindows(): void {
    const now = this.now();
    for (const k of this.ctx.state.keepers()) {
      const m = this.ctx.state.keeperMode(k.id);
      if (m.mode !== 'maintenance') continue;
      if (m.until <= now && !this.windowsEnded.has(k.id)) {
        this.windowsEnded.add(k.id);
        this.keeperChanged(k.id);
      } else if (m.until > now) {
        this.windowsEnded.delete(k.id);
      }
    }
  }

  private sweepSlice(into: Set<string>): void {
    if (this.sweep === null) {
      // Events catch nearly everything; the sweep is the safety net, so it starts at most once a minute.
      if (this.now() - this.sweepStarted < SWEEP_EVERY_MS) return;
      this.sweepStarted = this.now();
      this.sweep = this.ctx.state.chunkIds();
    }
    for (let i = 0; i < this.sweepPerTick; i++) {
      const next = this.sweep.next();
      if (next.done) {
        this.sweep = null;
        // Chunks deleted since they were last seen leave the books here.
        for (const id of this.under.keys()) if (this.ctx.state.chunkPlacement(id) === undefined) this.under.delete(id);
        return;
      }
      into.add(next.value);
    }
  }

  private async examine(chunkId: string): Promise<void> {
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner === undefined) {
      this.under.delete(chunkId);
      return;
    }
    const { replicas } = owner.chunk;
    const counting = countingReplicas(this.judge, chunkId, replicas);
    if (counting.length < owner.replication) {
      this.under.set(chunkId, counting.length);
      return;
    }
    this.under.delete(chunkId);
    if (this.copying.has(chunkId)) return;
    // Enough good copies: let go of replicas that will not come back or are being drained, and of
    // the least healthy copies beyond the factor (a keeper that came back after its data was repaired).
    const drop = replicas.filter((k) => !counting.includes(k) && !inMaintenance(this.judge, k) &&
      (this.judge.mode(k).mode === 'draining' || this.ctx.silentForMs(k) > this.forgetDeadAfterMs ||
        this.corrupt.get(chunkId)?.has(k) === true));
    const extra = counting.length - owner.replication;
    if (extra > 0) drop.push(...this.leastHealthy(chunkId, counting, extra));
    if (drop.length === 0) return;
    await this.dropReplicas(chunkId, drop, null);
    for (const k of drop) this.trimmed.set(k, (this.trimmed.get(k) ?? 0) + 1);
  }

  /**
   * The `n` replicas to give up first: those on keepers refusing writes (disk errors, full, draining
   * or in maintenance), then those on the fullest keepers.
   */
  private leastHealthy(chunkId: string, keepers: readonly string[], n: number): string[] {
    const view = new Map(this.ctx.placementView().map((k) => [k.id, k]));
    // Fill in steps of 5%: keepers about equally full are equals, and among equals a hash of chunk
    // and keeper decides, so trims after a keeper returns spread over all holders, not one.
    const badness = (id: string) => {
      const k = view.get(id);
      if (k === undefined || k.capacity === 0) return 60;
      return (k.acceptingWrites ? 0 : 40) + Math.round((k.used / k.capacity) * 20);
    };
    const tie = (id: string) => createHash('sha256').update(chunkId).update(id).digest().readUInt32BE(0);
    return keepers.slice().sort((a, b) => badness(b) - badness(a) || tie(a) - tie(b)).slice(0, n);
  }

  /** Drops replicas from the metadata; `why` null for trims, which are logged as one summary per tick. */
  private async dropReplicas(chunkId: string, keepers: readonly string[], why: string | null): Promise<void> {
    try {
      await this.ctx.commit({ type: 'update-replicas', chunkId, add: [], remove: [...keepers], mtime: this.now() });
      if (why !== null) this.ctx.log(`chunk ${chunkId}: replica${keepers.length === 1 ? '' : 's'} on ${keepers.join(', ')} ${why}`);
    } catch (err) {
      if (!(err instanceof DfsError && err.code === 'NOT_FOUND')) throw err;
    }
    this.dirty.add(chunkId);
  }

  /**
   * Hands out copies for under-replicated chunks while keepers have free slots: chunks with at most
   * one good replica first. Called every tick and on each heartbeat that brings results, so a keeper
   * that finishes a copy gets the next one in the same reply.
   */
  planCopies(): void {
    if (this.under.size === 0) return;
    const view = this.ctx.placementView();
    const slotsFree = (k: string) => this.tasks.copiesOn(k) < this.copiesPerKeeper;
    const anyFree = () => view.some((k) => k.alive && slotsFree(k.id));
    for (const urgent of [true, false]) {
      for (const [chunkId, n] of this.under) {
        if (urgent !== n <= 1 || this.copying.has(chunkId)) continue;
        if (!anyFree()) return;
        this.startCopy(chunkId, view, slotsFree);
      }
    }
  }

  private startCopy(chunkId: string, view: KeeperState[], slotsFree: (k: string) => boolean): void {
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner === undefined) return;
    const { replicas, size } = owner.chunk;
    const sources = readableReplicas(this.judge, chunkId, replicas)
      .filter((k) => this.ctx.alive(k) && slotsFree(k))
      .sort((a, b) => this.tasks.copiesOn(a) - this.tasks.copiesOn(b));
    if (sources.length === 0) return;
    const at = this.now();
    // Not a keeper busy with other copies or one that just failed this copy; and, while others can
    // take it, not one that found this chunk corrupt (its disk may be going).
    // Nor one with a deletion of this chunk pending: it could land after the copy and remove it.
    const avoid = view.filter((k) => !slotsFree(k.id) || (this.failedTargets.get(`${chunkId}:${k.id}`) ?? 0) > at ||
      this.tasks.has(TaskKind.DELETE, chunkId, k.id)).map((k) => k.id);
    const corrupt = [...(this.corrupt.get(chunkId) ?? [])];
    let target: string | undefined;
    for (const exclude of corrupt.length > 0 ? [[...avoid, ...corrupt], avoid] : [avoid]) {
      try {
        [target] = placeReplicas({ keepers: view, replication: 1, chunkSize: size, random: Math.random, existing: replicas, exclude });
        break;
      } catch {
        // no keeper can take it under these constraints; the chunk stays on the list
      }
    }
    const address = target === undefined ? undefined : this.ctx.address(target);
    if (target === undefined || address === undefined) return;
    const task = this.tasks.add({
      kind: TaskKind.COPY, purpose: 'repair', chunkId, keeperId: sources[0]!, targetId: target, targetAddress: address, bytes: size,
    });
    if (task !== undefined) this.copying.set(chunkId, task);
  }

  /** The outcome of a COPY or VERIFY task. */
  async onResult(task: Task, r: TaskResult): Promise<void> {
    const ok = r.status === 'NO_ERROR';
    if (task.kind === TaskKind.COPY) {
      if (this.copying.get(task.chunkId) === task) this.copying.delete(task.chunkId);
      this.dirty.add(task.chunkId);
      if (!ok) {
        this.ctx.log(`copy of chunk ${task.chunkId} from ${task.keeperId} to ${task.targetId} failed: ${r.status}${r.message ? ` (${r.message})` : ''}`);
        this.failedTargets.set(`${task.chunkId}:${task.targetId}`, this.now() + FAILED_TARGET_MS);
        // The source may have lost or damaged its copy: let it check, and say so through the usual paths.
        if (r.status === 'NOT_FOUND' || r.status === 'CHECKSUM_MISMATCH') this.onReadCorruption(task.chunkId, task.keeperId);
        return;
      }
      await this.recordCopy(task);
    } else if (task.kind === TaskKind.VERIFY && task.purpose === 'adopt') {
      // The keeper still holds a good copy: it is a replica again, if the chunk still needs one.
      if (r.status === 'NO_ERROR' && this.wantsCopyFrom(task.chunkId, task.keeperId)) {
        await this.ctx.commit({ type: 'update-replicas', chunkId: task.chunkId, add: [task.keeperId], remove: [], mtime: this.now() });
        this.ctx.log(`chunk ${task.chunkId}: the copy on ${task.keeperId} verified and adopted as a replica`);
      }
    } else if (task.kind === TaskKind.VERIFY) {
      if (r.status === 'NOT_FOUND' || r.status === 'CHECKSUM_MISMATCH') {
        const owner = this.ctx.state.chunkPlacement(task.chunkId);
        if (owner?.chunk.replicas.includes(task.keeperId)) {
          if (r.status === 'CHECKSUM_MISMATCH') this.markCorrupt(task.chunkId, task.keeperId);
          await this.dropReplicas(task.chunkId, [task.keeperId], r.status === 'NOT_FOUND' ? 'lost (the keeper no longer has it)' : 'dropped (corrupt)');
        }
      }
    }
  }

  private async recordCopy(task: Task): Promise<void> {
    const target = task.targetId!;
    const owner = this.ctx.state.chunkPlacement(task.chunkId);
    try {
      if (owner === undefined) throw new DfsError('NOT_FOUND', 'the file went away');
      const remove = task.purpose === 'move' && owner.chunk.replicas.includes(task.keeperId) ? [task.keeperId] : [];
      await this.ctx.commit({ type: 'update-replicas', chunkId: task.chunkId, add: [target], remove, mtime: this.now() });
    } catch (err) {
      if (!(err instanceof DfsError && err.code === 'NOT_FOUND')) throw err;
      // The file was deleted while copying: the new copy is garbage from the start.
      await this.ctx.commit({ type: 'mark-garbage', chunks: [{ id: task.chunkId, keepers: [target] }], mtime: this.now() });
      return;
    }
    if (task.purpose === 'repair') this.repairedCount++;
    this.copied.push({ at: this.now(), bytes: task.bytes });
  }

  private markCorrupt(chunkId: string, keeperId: string): void {
    let set = this.corrupt.get(chunkId);
    if (set === undefined) this.corrupt.set(chunkId, (set = new Set()));
    set.add(keeperId);
  }

  private async onCorrupt(keeperId: string, chunkId: string): Promise<void> {
    this.ctx.log(`keeper ${keeperId} found its replica of chunk ${chunkId} corrupt and quarantined it`);
    this.markCorrupt(chunkId, keeperId);
    const owner = this.ctx.state.chunkPlacement(chunkId);
    if (owner?.chunk.replicas.includes(keeperId)) await this.dropReplicas(chunkId, [keeperId], 'dropped (corrupt)');
  }

  private noteAdded(chunkId: string, keeperId: string, at: number): void {
    const key = `${chunkId}:${keeperId}`;
    this.recentlyAdded.set(key, at);
    this.addedOrder.push({ key, at });
    // Oldest first: forget what has left the race window, in amortised constant time.
    const limit = at - REPORT_RACE_MS;
    while (this.addedHead < this.addedOrder.length && this.addedOrder[this.addedHead]!.at < limit) {
      const old = this.addedOrder[this.addedHead++]!;
      if (this.recentlyAdded.get(old.key) === old.at) this.recentlyAdded.delete(old.key);
    }
    if (this.addedHead > 4096 && this.addedHead * 2 > this.addedOrder.length) {
      this.addedOrder.splice(0, this.addedHead);
      this.addedHead = 0;
    }
  }

  private addedRecently(chunkId: string, keeperId: string): boolean {
    const t = this.recentlyAdded.get(`${chunkId}:${keeperId}`);
    return t !== undefined && t > this.now() - REPORT_RACE_MS;
  }


  /**
   * Compares a keeper's full chunk list with the metadata: replicas it lost are dropped (or verified,
   * when the report may predate them); copies nobody needs there become garbage; a useful extra copy
   * of an under-replicated chunk is adopted as a replica.
   */
  private async reconcile(keeperId: string, held: ReadonlySet<string>): Promise<void> {
    const { state } = this.ctx;
    let lost = 0;
    for (const id of state.chunksOnKeeper(keeperId)) {
      if (held.has(id)) continue;
      if (this.addedRecently(id, keeperId) || this.copying.get(id)?.targetId === keeperId) {
        this.tasks.add({ kind: TaskKind.VERIFY, purpose: 'verify', chunkId: id, keeperId, bytes: 0 });
      } else {
        await this.dropReplicas(id, [keeperId], 'lost (not in the keeper\'s chunk report)');
        lost++;
      }
    }
    const unused: string[] = [];
    let adopted = 0;
    let unknown = 0;
    for (const id of held) {
      if (state.isUploading(id)) continue;
      const owner = state.chunkPlacement(id);
      if (owner !== undefined && owner.chunk.replicas.includes(keeperId)) continue;
      if (owner !== undefined && this.offerCopy(id, keeperId)) {
        adopted++;
        continue;
      }
      if (state.garbageOf(id)?.keepers.includes(keeperId)) continue;
      if (this.copying.get(id)?.targetId === keeperId) continue;
      if (owner === undefined && state.garbageOf(id) === undefined) unknown++;
      unused.push(id);
    }
    // Chunks no entry ever mentioned are rare: uploads, deletions and trims all leave garbage records.
    // Many of them mean this master's metadata does not belong with this keeper (an empty or wrong
    // --data directory, a keeper from another cluster): collecting them would destroy data.
    if (unknown > UNKNOWN_CHUNKS_ALARM && unknown > held.size / 10) {
      this.ctx.log(`keeper ${keeperId} holds ${unknown} of ${held.size} chunks this master has never heard of; ` +
        'NOT collecting them: is the master running on the right --data directory, and is this keeper part of this cluster?');
      return;
    }
    for (let i = 0; i < unused.length; i += 10_000) {
      const chunks = unused.slice(i, i + 10_000).map((id) => ({ id, keepers: [keeperId] }));
      await this.ctx.commit({ type: 'mark-garbage', chunks, mtime: this.now() });
    }
    this.ctx.log(`keeper ${keeperId} reported ${held.size} chunks: ${lost} lost, ${adopted} to adopt once verified, ${unused.length} unused (garbage)`);
  }
}

function kindName(kind: number): string {
  return kind === TaskKind.COPY ? 'copy' : kind === TaskKind.DELETE ? 'delete' : 'verify';
}
