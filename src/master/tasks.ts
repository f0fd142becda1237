// Work the master hands keepers in heartbeat replies (wire-spec.md §11.1): copies, deletions and
// verifications. Soft state: after a restart the master recomputes what is needed from the metadata.
// Every task has a deadline; a result that never comes only delays the work, never loses it.

import { TaskKind } from '../protocol/ops.js';

export type TaskKindValue = (typeof TaskKind)[keyof typeof TaskKind];

/** Why the master asked: decides what a result changes. */
export type TaskPurpose = 'repair' | 'move' | 'collect' | 'verify' | 'adopt';

export interface Task {
  readonly taskId: number;
  readonly kind: TaskKindValue;
  readonly purpose: TaskPurpose;
  readonly chunkId: string;
  /** The keeper that does the work: for COPY, the source. */
  readonly keeperId: string;
  readonly targetId?: string;
  readonly targetAddress?: string;
  /** Chunk bytes a COPY moves, for the repair rate. */
  readonly bytes: number;
  /** When the task left in a heartbeat reply; 0 while it waits for one. */
  sentAt: number;
}

export type NewTask = Omit<Task, 'taskId' | 'sentAt'>;

export class TaskBook {
  private nextId = 1;
  private readonly byId = new Map<number, Task>();
  /** Tasks waiting for their keeper's next heartbeat, in order. */
  private readonly waiting = new Map<string, Task[]>();
  /** COPY tasks each keeper takes part in, as source or target. */
  private readonly copiesByKeeper = new Map<string, number>();
  /** DELETE tasks per keeper. */
  private readonly deletesByKeeper = new Map<string, number>();
  /** `${kind}:${chunkId}:${keeperId}`: one task of a kind per chunk and keeper at a time. */
  private readonly keys = new Set<string>();
  /** `${chunkId}:${targetId}` of every open COPY. */
  private readonly copyTargets = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.byId.size;
  }

  /** Queues a task; undefined when the same kind of task for this chunk and keeper is already open. */
  add(t: NewTask): Task | undefined {
    const key = keyOf(t.kind, t.chunkId, t.keeperId);
    if (this.keys.has(key)) return undefined;
    const task: Task = { ...t, taskId: this.nextId++, sentAt: 0 };
    this.keys.add(key);
    this.byId.set(task.taskId, task);
    let list = this.waiting.get(t.keeperId);
    if (list === undefined) this.waiting.set(t.keeperId, (list = []));
    list.push(task);
    this.count(task, +1);
    return task;
  }

  has(kind: TaskKindValue, chunkId: string, keeperId: string): boolean {
    return this.keys.has(keyOf(kind, chunkId, keeperId));
  }

  /** True while a COPY of the chunk to this keeper is open: a delete there now could hit the new copy. */
  copyingTo(chunkId: string, keeperId: string): boolean {
    return this.copyTargets.has(`${chunkId}:${keeperId}`);
  }

  /** COPY tasks the keeper takes part in, as source or target. */
  copiesOn(keeperId: string): number {
    return this.copiesByKeeper.get(keeperId) ?? 0;
  }

  deletesOn(keeperId: string): number {
    return this.deletesByKeeper.get(keeperId) ?? 0;
  }

  /** Up to `max` waiting tasks for a keeper's heartbeat reply; they count as sent from now. */
  takeFor(keeperId: string, max: number): Task[] {
    const list = this.waiting.get(keeperId);
    if (list === undefined) return [];
    const out = list.splice(0, max);
    if (list.length === 0) this.waiting.delete(keeperId);
    const at = this.now();
    for (const t of out) t.sentAt = at;
    return out;
  }

  /** Closes a task on its result; undefined for an unknown id or a result from the wrong keeper. */
  complete(keeperId: string, taskId: number): Task | undefined {
    const task = this.byId.get(taskId);
    if (task === undefined || task.keeperId !== keeperId || task.sentAt === 0) return undefined;
    this.remove(task);
    return task;
  }

  /** Closes every task sent more than `timeoutMs` ago, and waiting ones of keepers gone for as long. */
  expire(timeoutMs: number): Task[] {
    const limit = this.now() - timeoutMs;
    const out: Task[] = [];
    for (const task of this.byId.values()) {
      if (task.sentAt !== 0 && task.sentAt < limit) out.push(task);
    }
    for (const t of out) this.remove(t);
    return out;
  }

  /**
   * Drops the tasks a keeper was to do, e.g. because it died: every waiting one, and the sent ones
   * that `dropSent` picks. Returns them.
   */
  dropKeeper(keeperId: string, dropSent: (t: Task) => boolean = () => true): Task[] {
    const list = this.waiting.get(keeperId) ?? [];
    this.waiting.delete(keeperId);
    for (const t of list) this.remove(t, false);
    const sent = [...this.byId.values()].filter((t) => t.keeperId === keeperId && dropSent(t));
    for (const t of sent) this.remove(t);
    return [...list, ...sent];
  }

  private remove(task: Task, fromWaiting = true): void {
    this.byId.delete(task.taskId);
    this.keys.delete(keyOf(task.kind, task.chunkId, task.keeperId));
    this.count(task, -1);
    if (fromWaiting && task.sentAt === 0) {
      const list = this.waiting.get(task.keeperId);
      const i = list?.indexOf(task) ?? -1;
      if (list && i >= 0) list.splice(i, 1);
    }
  }

  private count(task: Task, delta: number): void {
    const bump = (map: Map<string, number>, id: string) => {
      const n = (map.get(id) ?? 0) + delta;
      if (n <= 0) map.delete(id);
      else map.set(id, n);
    };
    if (task.kind === TaskKind.COPY) {
      bump(this.copiesByKeeper, task.keeperId);
      if (task.targetId !== undefined) {
        bump(this.copiesByKeeper, task.targetId);
        const target = `${task.chunkId}:${task.targetId}`;
        if (delta > 0) this.copyTargets.add(target);
        else this.copyTargets.delete(target);
      }
    } else if (task.kind === TaskKind.DELETE) {
      bump(this.deletesByKeeper, task.keeperId);
    }
  }
}

function keyOf(kind: number, chunkId: string, keeperId: string): string {
  return `${kind}:${chunkId}:${keeperId}`;
}
