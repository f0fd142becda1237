// A session pinned to one worker thread: the state (a running hash, an open file) lives in that
// thread between requests, so every request of the session goes to it, in order.

import type { DfsError } from '../wire/errors.js';
import type { RequestDraft, Result, Transfer } from './protocol.js';
import type { Pin, WorkerPool } from './pool.js';

/** Default batch for streamed bytes: 256 KiB. */
export const DEFAULT_BATCH_BYTES = 256 * 1024;

export interface SessionRunOptions {
  /** Bytes to send with the request (in its `data` or `prefix` field). */
  data?: Uint8Array;
  field?: 'data' | 'prefix';
  transfer?: Transfer;
  /** Resource release: runs even when the queue is full. */
  cleanup?: boolean;
}

export interface SessionOptions {
  /**
   * Small pieces are gathered into batches of this many bytes before they go to the worker: a
   * request costs tens of microseconds whatever its size, so 16 KiB network pieces one by one
   * would spend more time on messages than on hashing. 0 sends every piece as it is.
   */
  batchBytes?: number;
}

export abstract class PinnedSession {
  protected readonly sid: number;
  /** The first failure; every later request fails with it, since the worker state is gone. */
  protected failure: DfsError | null = null;
  /** Set once the session ended (finished, aborted or failed) and its pin was released. */
  protected ended = false;
  /** Whether the worker knows the session yet (hash sessions start on their first request). */
  protected started = false;
  private readonly batchBytes: number;
  private batch: Uint8Array | null = null;
  private batchUsed = 0;
  /** The last data request sent; the next one waits for it, so at most two are queued per session. */
  private inflight: Promise<void> | null = null;

  constructor(
    protected readonly pool: WorkerPool,
    protected readonly pin: Pin,
    protected readonly context: string,
    opts: SessionOptions = {},
  ) {
    this.sid = pool._nextSessionId();
    this.batchBytes = opts.batchBytes ?? DEFAULT_BATCH_BYTES;
  }

  /** Whether the session failed; its error, if so. */
  get error(): DfsError | null {
    return this.failure;
  }

  protected run(req: RequestDraft, opts: SessionRunOptions = {}): Promise<Result> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const create = !this.started;
    this.started = true;
    return this.pool
      ._run(req, {
        ...opts,
        pin: this.pin,
        create,
        context: this.context,
        // Requests queued behind a failed one never reach the worker: they would only find no session.
        guard: () => this.failure,
      })
      .catch((err: DfsError) => {
        if (this.failure === null) this.failure = err;
        this.end();
        throw err;
      });
  }

  /**
   * Sends bytes for an 'update' request, batching small pieces. Resolves once the bytes are copied
   * into a batch, or sent and the previous request finished: memory per session stays within about
   * two requests plus one batch, and a failure is reported by a later call (or by the end of the
   * session) when it is not by this one.
   */
  protected append(data: Uint8Array, transfer: Transfer): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.batchBytes === 0 || data.byteLength >= this.batchBytes / 2) {
      const flushed = this.flush();
      const sent = this.send(data, transfer);
      return flushed === null ? sent : flushed.then(() => sent);
    }
    let waits: Promise<void> | null = null;
    if (this.batch !== null && this.batchUsed + data.byteLength > this.batch.byteLength) waits = this.flush();
    if (this.batch === null) {
      this.batch = new Uint8Array(new ArrayBuffer(this.batchBytes));
      this.batchUsed = 0;
    }
    this.batch.set(data, this.batchUsed);
    this.batchUsed += data.byteLength;
    return waits ?? Promise.resolve();
  }

  /** Sends the batch being gathered, if any; resolves as `send` does. */
  protected flush(): Promise<void> | null {
    if (this.batch === null || this.batchUsed === 0) return null;
    const full = this.batch.subarray(0, this.batchUsed);
    this.batch = null;
    this.batchUsed = 0;
    // The batch is the session's own memory: it moves to the worker, never copied again.
    return this.send(full, 'move');
  }

  private send(data: Uint8Array, transfer: Transfer): Promise<void> {
    const sent = this.run({ op: 'update', sid: this.sid }, { data, field: 'data', transfer }).then(
      () => undefined,
    );
    // Nobody may await this one: its failure is latched and reported by the next call.
    sent.catch(() => undefined);
    const previous = this.inflight;
    this.inflight = sent;
    return previous ?? Promise.resolve();
  }

  /** Sends what is batched, then the request that ends the session; its result once all went through. */
  protected finishWith(req: RequestDraft): Promise<Result> {
    this.flush();
    return this.run(req);
  }

  /** Releases the pin; the worker has dropped (or is about to drop) the session's state. */
  protected end(): void {
    if (this.ended) return;
    this.ended = true;
    this.batch = null;
    this.pool._unpin(this.pin);
  }

  /** Tells the worker to drop the session (closing any file); never fails. */
  protected async drop(): Promise<void> {
    if (this.ended) return;
    const wasStarted = this.started;
    this.end();
    if (!wasStarted) return;
    try {
      await this.pool._run({ op: 'abort', sid: this.sid }, { pin: this.pin, cleanup: true, context: this.context });
    } catch {
      // The worker died or the pool closed: the pool closed the descriptor itself.
    }
  }
}
