// READ_CHUNK: the whole chunk, verified against its stored SHA-256 before the first byte leaves, so
// a damaged replica is never served. Whole-chunk reads hold the chunk in memory; a byte budget
// bounds how much all reads in flight may hold together.

import { DfsError } from '../wire/errors.js';
import type { Handler } from '../transport/index.js';
import { READ_CHUNK } from '../protocol/ops.js';
import type { ChunkStore } from './chunk-store.js';
import type { DamagedReplicas } from './damaged-replicas.js';

/** Default bytes all READ_CHUNK replies in flight may hold: 256 MiB. */
export const DEFAULT_READ_BUDGET = 256 * 1024 * 1024;

export interface ReadChunkOptions {
  store: ChunkStore;
  /** Bytes of chunk data held by reads in flight; more wait. Default 256 MiB. */
  budgetBytes?: number;
  log?: (line: string) => void;
  onActive?: (delta: 1 | -1) => void;
  /** Where a replica that fails verification goes. Default: it is quarantined and logged, not reported. */
  damaged?: DamagedReplicas;
}

export function readChunkHandler(opts: ReadChunkOptions): Handler<typeof READ_CHUNK.request, typeof READ_CHUNK.response> {
  const budget = new ByteBudget(opts.budgetBytes ?? DEFAULT_READ_BUDGET);
  return async (ctx) => {
    const { request, body: stream } = ctx;
    const { store } = opts;
    const info = store.stat(request.chunkId);
    if (!info) throw new DfsError('NOT_FOUND', `chunk ${request.chunkId} is not stored on this keeper`);
    opts.onActive?.(1);
    let held = false;
    try {
      // The request's signal is built on first use: only a read that must wait for budget needs one.
      await budget.take(info.size, () => ctx.signal);
      held = true;
      let data: Buffer;
      try {
        ({ data } = await store.read(info.id));
      } catch (err) {
        if (err instanceof DfsError && err.code === 'CHECKSUM_MISMATCH') {
          // Keep the damaged file for inspection and report it, so the master re-replicates it.
          if (opts.damaged) await opts.damaged.quarantine(info.id, 'read', err);
          else {
            await store.quarantine(info.id).catch(() => false);
            opts.log?.(`chunk ${info.id} failed verification and was quarantined: ${err.message}`);
          }
        }
        throw err;
      }
      // The budget is returned once the reply has left (or the stream died), not when it was queued.
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        budget.give(info.size);
      };
      held = false;
      if (stream.destroyed) release();
      else {
        stream.once('close', release);
        stream.once('finish', release);
      }
      return { response: { size: info.size, sha256: info.sha256 }, body: data };
    } finally {
      if (held) budget.give(info.size);
      opts.onActive?.(-1);
    }
  };
}

/** A counting semaphore over bytes; one request larger than the whole budget runs alone. */
class ByteBudget {
  private used = 0;
  private readonly waiters: { bytes: number; resolve: () => void }[] = [];

  constructor(private readonly limit: number) {}

  take(bytes: number, signalOf: () => AbortSignal): Promise<void> {
    if (this.waiters.length === 0 && (this.used === 0 || this.used + bytes <= this.limit)) {
      this.used += bytes;
      return Promise.resolve();
    }
    const signal = signalOf();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        bytes,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(signal.reason);
        this.wake();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  give(bytes: number): void {
    this.used -= bytes;
    this.wake();
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      const next = this.waiters[0]!;
      if (this.used > 0 && this.used + next.bytes > this.limit) return;
      this.waiters.shift();
      this.used += next.bytes;
      next.resolve();
    }
  }
}
