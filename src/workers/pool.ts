// A small bounded pool of worker threads for SHA-256 and chunk file IO, so the event loop stays free
// for the network. One request per worker at a time; a bounded queue; sessions pinned to one worker.

import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { closeSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DfsError } from '../wire/errors.js';
import { fsError } from './errors.js';
import { HashSession } from './hasher.js';
import { FileReadSession, FileWriteSession } from './file-io.js';
import type { SessionOptions } from './session.js';
import {
  toBytes,
  type Bytes,
  type ReplyMessage,
  type RequestDraft,
  type Result,
  type ScanResult,
  type Transfer,
} from './protocol.js';

export interface WorkerPoolOptions {
  /** Worker threads. Default min(4, max(2, availableParallelism())). */
  size?: number;
  /** Requests waiting for a worker before new ones fail with UNAVAILABLE. Default 256. */
  maxQueue?: number;
}

export const DEFAULT_MAX_QUEUE = 256;

export function defaultPoolSize(): number {
  return Math.min(4, Math.max(2, availableParallelism()));
}

/**
 * The worker script beside this module: `worker.js` when running compiled code, `worker.ts` when
 * running the sources under tsx. The sibling with this module's own extension wins, so a stale
 * compiled file next to the sources is never picked up by mistake.
 */
export function resolveWorkerScript(base: string | URL = import.meta.url): { url: URL; typescript: boolean } {
  const own = String(base).endsWith('.ts') ? '.ts' : '.js';
  const order = own === '.ts' ? ['.ts', '.js'] : ['.js', '.ts'];
  for (const ext of order) {
    const url = new URL(`./worker${ext}`, base);
    if (existsSync(fileURLToPath(url))) return { url, typescript: ext === '.ts' };
  }
  throw new DfsError('INTERNAL_ERROR', `dfs worker script not found beside ${String(base)} (worker.js or worker.ts)`);
}

/**
 * Starts a worker running the script. Node 20 does not apply tsx's `--import` hooks to a worker's
 * entry file, so a .ts worker starts from a tiny module-mode bootstrap that registers tsx and then
 * imports the script. Compiled .js workers start directly.
 */
function spawnWorker(script: { url: URL; typescript: boolean }): Worker {
  if (!script.typescript) return new Worker(script.url);
  let api: string;
  try {
    api = import.meta.resolve('tsx/esm/api');
  } catch (err) {
    throw new DfsError('INTERNAL_ERROR', `cannot run the TypeScript worker ${script.url.href}: tsx is not installed`, {
      cause: err,
    });
  }
  const bootstrap =
    `import(${JSON.stringify(api)}).then(({ register }) => { register(); ` +
    `return import(${JSON.stringify(script.url.href)}); });`;
  return new Worker(bootstrap, { eval: true });
}

interface Job {
  req: RequestDraft;
  create: boolean;
  data: Uint8Array | undefined;
  field: 'data' | 'prefix';
  transfer: Transfer;
  context: string;
  guard: (() => DfsError | null) | undefined;
  resolve: (r: Result) => void;
  reject: (e: DfsError) => void;
}

interface Slot {
  index: number;
  /** null only if spawning failed. */
  worker: Worker | null;
  /** Bumped each time the slot gets a new worker; pins of an older generation are dead. */
  generation: number;
  ready: boolean;
  everReady: boolean;
  busy: Job | null;
  pinned: Job[];
  sessions: number;
  /** Descriptors sessions hold open in this worker, closed here if it dies. */
  fds: Set<number>;
  /** Alternates between pinned and shared work so neither starves the other. */
  sharedTurn: boolean;
  exitError: Error | null;
}

/** A session's claim on one worker. */
export interface Pin {
  readonly slot: number;
  readonly generation: number;
}

export interface RunOptions {
  pin?: Pin;
  create?: boolean;
  data?: Uint8Array;
  field?: 'data' | 'prefix';
  transfer?: Transfer;
  cleanup?: boolean;
  guard?: () => DfsError | null;
  context: string;
}

export interface PoolStats {
  size: number;
  ready: number;
  busy: number;
  queued: number;
  sessions: number;
}

export class WorkerPool {
  readonly size: number;
  readonly maxQueue: number;
  private readonly script: { url: URL; typescript: boolean };
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  /** Jobs waiting in the shared queue and in every slot's pinned queue. */
  private waiting = 0;
  private nextJobId = 1;
  private nextSid = 1;
  private closed = false;
  private closing: Promise<void> | null = null;
  private startError: DfsError | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: WorkerPoolOptions = {}) {
    this.size = opts.size ?? defaultPoolSize();
    this.maxQueue = opts.maxQueue ?? DEFAULT_MAX_QUEUE;
    if (!Number.isInteger(this.size) || this.size < 1) {
      throw new DfsError('INVALID_ARGUMENT', `worker pool size must be a positive integer, got ${this.size}`);
    }
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0) {
      throw new DfsError('INVALID_ARGUMENT', `worker pool maxQueue must be a non-negative integer, got ${this.maxQueue}`);
    }
    this.script = resolveWorkerScript();
    for (let i = 0; i < this.size; i++) {
      const slot: Slot = {
        index: i,
        worker: null,
        generation: 0,
        ready: false,
        everReady: false,
        busy: null,
        pinned: [],
        sessions: 0,
        fds: new Set(),
        sharedTurn: false,
        exitError: null,
      };
      this.slots.push(slot);
      this.start(slot);
    }
  }

  // ---- Public API ----

  /**
   * Lowercase hex SHA-256 of a whole buffer. `data` is copied to the worker, unless `transfer` is set
   * and it spans its whole ArrayBuffer: then that is moved (no copy) and `data` is empty afterwards.
   */
  async sha256(data: Uint8Array, opts: { transfer?: boolean } = {}): Promise<string> {
    const result = await this._run(
      { op: 'sha256' },
      { data, transfer: opts.transfer === true ? 'move-if-whole' : 'copy', context: 'sha256' },
    );
    return result.digest!;
  }

  /** A running SHA-256 pinned to one worker, for bytes that arrive in pieces. */
  hashSession(opts: SessionOptions = {}): HashSession {
    this.assertOpen();
    return new HashSession(this, this._pin(), opts);
  }

  /** Creates `path` (it must not exist), writes `prefix` unhashed, and returns a session that appends and hashes. */
  async openFileWriter(path: string, opts: { prefix?: Uint8Array } & SessionOptions = {}): Promise<FileWriteSession> {
    this.assertOpen();
    const session = new FileWriteSession(this, this._pin(), path, opts);
    await session._open(opts.prefix);
    return session;
  }

  /**
   * Creates `path` (it must not exist), writes `data`, fsyncs (unless `fsync` is false) and closes it,
   * then renames it to `renameTo` and fsyncs `syncDir`, all in one request. `data` is given away: moved
   * to the worker when it spans its whole ArrayBuffer, else copied. The file stays behind on failure.
   */
  async writeFile(path: string, data: Uint8Array, opts: { fsync?: boolean; renameTo?: string; syncDir?: string } = {}): Promise<void> {
    await this._run(
      {
        op: 'writeFile',
        path,
        fsync: opts.fsync ?? true,
        ...(opts.renameTo === undefined ? {} : { renameTo: opts.renameTo }),
        ...(opts.syncDir === undefined ? {} : { syncDir: opts.syncDir }),
      },
      { data, transfer: 'move-if-whole', context: `write ${path}` },
    );
  }

  /**
   * Writes `data` at `position` of `path`, fdatasyncs (unless `fsync` is false) and closes it, in one
   * request. With `create` the file must not exist yet, and `syncDir` is fsynced after it is made.
   * `data` is given away, as with writeFile.
   */
  async writeAt(path: string, data: Uint8Array, opts: { position: number; create: boolean; fsync?: boolean; syncDir?: string }): Promise<void> {
    await this._run(
      {
        op: 'writeAt',
        path,
        position: opts.position,
        create: opts.create,
        fsync: opts.fsync ?? true,
        ...(opts.syncDir === undefined ? {} : { syncDir: opts.syncDir }),
      },
      { data, transfer: 'move-if-whole', context: `write ${path}` },
    );
  }

  /** Opens `path` for reading from `position`, hashing what is read. */
  async openFileReader(path: string, position = 0): Promise<FileReadSession> {
    this.assertOpen();
    const session = new FileReadSession(this, this._pin(), path);
    await session._open(position);
    return session;
  }

  /**
   * Reads `length` bytes at `offset` of `path` and returns them only if their SHA-256 is `sha256`
   * (and the file is `fileSize` bytes, when given); otherwise CHECKSUM_MISMATCH.
   */
  async readVerified(
    path: string,
    o: { offset: number; length: number; sha256: string; fileSize?: number },
  ): Promise<Buffer> {
    const result = await this._run(
      {
        op: 'readVerified',
        path,
        offset: o.offset,
        length: o.length,
        expect: o.sha256,
        ...(o.fileSize === undefined ? {} : { fileSize: o.fileSize }),
      },
      { context: `read ${path}` },
    );
    return Buffer.from(result.data!);
  }

  /** The regular files of a directory with their sizes and first `prefixBytes` bytes. */
  async scanDir(path: string, prefixBytes: number): Promise<ScanResult> {
    const result = await this._run({ op: 'scanDir', path, prefixBytes }, { context: `scan ${path}` });
    return result.scan!;
  }

  stats(): PoolStats {
    return {
      size: this.size,
      ready: this.slots.filter((s) => s.ready).length,
      busy: this.slots.filter((s) => s.busy !== null).length,
      queued: this.waiting,
      sessions: this.slots.reduce((n, s) => n + s.sessions, 0),
    };
  }

  /**
   * Stops the pool: queued requests fail with UNAVAILABLE, requests already running in a worker
   * finish, then the workers exit and descriptors of open sessions are closed.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    const gone = new DfsError('UNAVAILABLE', 'worker pool is closed');
    this.failQueued(gone);
    // Idle workers are unref'd; while closing they must keep the process alive until they have
    // exited, or a caller awaiting close() is left with a promise that never settles.
    this.closing = (async () => {
      for (const slot of this.slots) slot.worker?.ref();
      while (this.slots.some((s) => s.busy !== null)) {
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      }
      await Promise.all(this.slots.map((s) => (s.worker === null ? undefined : s.worker.terminate())));
      for (const slot of this.slots) this.closeFds(slot);
    })();
    return this.closing;
  }

  // ---- Internal API for sessions (session.ts, hasher.ts, file-io.ts) ----

  /** @internal */
  _nextSessionId(): number {
    return this.nextSid++;
  }

  /** @internal Picks the worker with the fewest sessions, then the least work, for a new session. */
  _pin(): Pin {
    const load = (x: Slot): number => x.pinned.length + (x.busy === null ? 0 : 1);
    let best = this.slots[0]!;
    for (const s of this.slots) {
      if (s.sessions < best.sessions || (s.sessions === best.sessions && load(s) < load(best))) best = s;
    }
    best.sessions++;
    return { slot: best.index, generation: best.generation };
  }

  /** @internal */
  _unpin(pin: Pin): void {
    const slot = this.slots[pin.slot]!;
    if (slot.generation === pin.generation && slot.sessions > 0) slot.sessions--;
  }

  /** @internal Queues one request; pinned requests go to their worker, others to the first free one. */
  _run(req: RequestDraft, o: RunOptions): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      if (this.closed) {
        // After close, every descriptor is (or will be) closed by the pool itself.
        if (o.cleanup) resolve({});
        else reject(new DfsError('UNAVAILABLE', `${o.context}: worker pool is closed`));
        return;
      }
      if (this.startError !== null) {
        reject(this.startError);
        return;
      }
      const job: Job = {
        req,
        create: o.create === true,
        data: o.data,
        field: o.field ?? 'data',
        transfer: o.transfer ?? 'copy',
        context: o.context,
        guard: o.guard,
        resolve,
        reject,
      };
      if (o.pin !== undefined) {
        const slot = this.slots[o.pin.slot]!;
        if (slot.generation !== o.pin.generation) {
          reject(new DfsError('INTERNAL_ERROR', `${o.context}: its worker thread exited; the session is lost`));
          return;
        }
        if (!o.cleanup && this.full() && !this.canStart(slot, true)) {
          reject(this.queueFull(o.context));
          return;
        }
        slot.pinned.push(job);
        this.waiting++;
        this.pump(slot);
        return;
      }
      const free = this.slots.find((s) => this.canStart(s, false));
      if (free !== undefined) {
        this.waiting++;
        this.queue.push(job);
        this.pump(free);
        return;
      }
      if (!o.cleanup && this.full()) {
        reject(this.queueFull(o.context));
        return;
      }
      this.queue.push(job);
      this.waiting++;
      for (const s of this.slots) this.updateRef(s);
    });
  }

  // ---- Workers ----

  private assertOpen(): void {
    if (this.closed) throw new DfsError('UNAVAILABLE', 'worker pool is closed');
    if (this.startError !== null) throw this.startError;
  }

  private full(): boolean {
    return this.waiting >= this.maxQueue;
  }

  private queueFull(context: string): DfsError {
    return new DfsError(
      'UNAVAILABLE',
      `${context}: worker pool queue is full (${this.waiting} requests waiting, limit ${this.maxQueue}); retry later`,
    );
  }

  /** Whether a job given to this slot now would start at once. */
  private canStart(slot: Slot, pinned: boolean): boolean {
    return slot.ready && slot.busy === null && slot.pinned.length === 0 && (pinned || this.queue.length === 0);
  }

  private start(slot: Slot): void {
    let worker: Worker;
    try {
      worker = spawnWorker(this.script);
    } catch (err) {
      this.startFailed(err as Error);
      return;
    }
    slot.worker = worker;
    slot.ready = false;
    slot.exitError = null;
    worker.unref();
    worker.on('message', (msg: ReplyMessage | { ready: true }) => {
      if (slot.worker !== worker) return;
      if ('ready' in msg) {
        slot.ready = true;
        slot.everReady = true;
        this.pump(slot);
        return;
      }
      this.onReply(slot, msg);
    });
    worker.on('error', (err) => {
      slot.exitError = err;
    });
    worker.on('exit', (code) => this.onExit(slot, worker, code));
  }

  private onReply(slot: Slot, msg: ReplyMessage): void {
    const job = slot.busy;
    slot.busy = null;
    if (msg.fdOpened !== undefined) slot.fds.add(msg.fdOpened);
    if (msg.fdClosed !== undefined) slot.fds.delete(msg.fdClosed);
    if (job !== null) {
      if (msg.ok) job.resolve(msg.result ?? {});
      else job.reject(fsError(msg.error, job.context));
    }
    this.pump(slot);
    this.notifyIdle();
  }

  private onExit(slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    const cause = slot.exitError;
    slot.ready = false;
    const wasReady = slot.everReady;
    slot.generation++;
    slot.sessions = 0;
    const lost = new DfsError(
      this.closed ? 'UNAVAILABLE' : 'INTERNAL_ERROR',
      this.closed ? 'worker pool is closed' : `worker thread exited (code ${code}${cause ? `: ${cause.message}` : ''})`,
      cause ? { cause } : undefined,
    );
    const busy = slot.busy;
    slot.busy = null;
    busy?.reject(lost);
    const pinned = slot.pinned.splice(0);
    this.waiting -= pinned.length;
    for (const job of pinned) job.reject(lost);
    this.closeFds(slot);
    this.notifyIdle();
    if (this.closed) return;
    if (!wasReady) {
      // A worker that never started will not start next time either: fail loudly, do not loop.
      this.startFailed(cause ?? new Error(`worker thread exited with code ${code} before it was ready`));
      return;
    }
    this.start(slot);
  }

  private startFailed(err: Error): void {
    this.startError = new DfsError('INTERNAL_ERROR', `worker thread failed to start: ${err.message}`, { cause: err });
    this.failQueued(this.startError);
  }

  private failQueued(err: DfsError): void {
    const jobs = this.queue.splice(0);
    for (const slot of this.slots) jobs.push(...slot.pinned.splice(0));
    this.waiting -= jobs.length;
    for (const job of jobs) {
      if (this.closed && job.req.op === 'abort') job.resolve({});
      else job.reject(err);
    }
    for (const slot of this.slots) this.updateRef(slot);
  }

  /**
   * Closes what a dead or stopped worker left open. A worker killed between closing a descriptor
   * and reporting it could make this close a number already reused; only abnormal deaths risk it.
   */
  private closeFds(slot: Slot): void {
    for (const fd of slot.fds) {
      try {
        closeSync(fd);
      } catch {
        // Already closed.
      }
    }
    slot.fds.clear();
  }

  private pump(slot: Slot): void {
    while (slot.ready && slot.busy === null) {
      const shared = slot.sharedTurn;
      slot.sharedTurn = !slot.sharedTurn;
      const job = shared ? (this.queue.shift() ?? slot.pinned.shift()) : (slot.pinned.shift() ?? this.queue.shift());
      if (job === undefined) break;
      this.waiting--;
      const refused = job.guard?.() ?? null;
      if (refused !== null) {
        job.reject(refused);
        continue;
      }
      this.dispatch(slot, job);
    }
    this.updateRef(slot);
  }

  private dispatch(slot: Slot, job: Job): void {
    const id = this.nextJobId++;
    const send = (transfer: Transfer): void => {
      const msg: Record<string, unknown> = { ...job.req, id };
      if (job.create) msg.create = true;
      const list: ArrayBuffer[] = [];
      if (job.data !== undefined) {
        const bytes: Bytes = toBytes(job.data, transfer);
        msg[job.field] = bytes;
        list.push(bytes.buffer);
      }
      slot.worker!.postMessage(msg, list);
    };
    slot.busy = job;
    try {
      send(job.transfer);
    } catch (err) {
      // Some ArrayBuffers cannot move (node's Buffer pool is marked untransferable): copy instead.
      try {
        send('copy');
      } catch {
        slot.busy = null;
        job.reject(new DfsError('INTERNAL_ERROR', `${job.context}: cannot send to worker: ${(err as Error).message}`, { cause: err }));
      }
    }
  }

  /** A worker keeps the process alive only while it has work; an idle pool never does. */
  private updateRef(slot: Slot): void {
    if (slot.worker === null) return;
    // While closing, every worker holds the process until it has exited (see close()).
    const wanted = this.closing !== null || slot.busy !== null || slot.pinned.length > 0 || (!slot.ready && this.queue.length > 0);
    if (wanted) slot.worker.ref();
    else slot.worker.unref();
  }

  private notifyIdle(): void {
    if (this.idleWaiters.length === 0 || this.slots.some((s) => s.busy !== null)) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
