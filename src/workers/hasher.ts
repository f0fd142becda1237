// Incremental SHA-256 in a worker: the event loop feeds a chunk's bytes as they arrive from the
// network and gets the digest at the end, without ever hashing on its own thread.

import { DfsError } from '../wire/errors.js';
import { PinnedSession, type SessionOptions } from './session.js';
import type { Pin, WorkerPool } from './pool.js';

/**
 * One running SHA-256, pinned to one worker. `update` may be called again before the previous
 * call settled: requests run in call order. Once one fails, the session is over and every later
 * call fails with the same error.
 */
export class HashSession extends PinnedSession {
  private bytesIn = 0;
  private finishing = false;

  constructor(pool: WorkerPool, pin: Pin, opts: SessionOptions = {}) {
    super(pool, pin, 'hash session', opts);
  }

  /** Bytes passed to update so far. */
  get bytes(): number {
    return this.bytesIn;
  }

  /**
   * Adds bytes to the hash. Resolves once the bytes are taken (small pieces are batched), so
   * updates may be pipelined; a failure fails a later update or digest(). The caller must not
   * change `data` until the promise settles. With `transfer`, a buffer spanning its whole
   * ArrayBuffer may be moved instead of copied, leaving `data` empty.
   */
  update(data: Uint8Array, opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.finishing) return Promise.reject(new DfsError('INVALID_ARGUMENT', `${this.context}: update after digest`));
    this.bytesIn += data.byteLength;
    const taken = this.append(data, opts.transfer === true ? 'move-if-whole' : 'copy');
    taken.catch(() => undefined); // pipelined callers need not await: digest() reports the failure
    return taken;
  }

  /** The lowercase hex SHA-256 of everything passed to update; ends the session. */
  async digest(): Promise<string> {
    if (this.finishing) throw new DfsError('INVALID_ARGUMENT', `${this.context}: digest called twice`);
    this.finishing = true;
    const result = await this.finishWith({ op: 'digest', sid: this.sid });
    this.end();
    return result.digest!;
  }

  /** Drops the session without a digest. */
  abort(): Promise<void> {
    this.finishing = true;
    return this.drop();
  }
}
