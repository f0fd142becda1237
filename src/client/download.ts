// Reading a file: its chunk list from STAT, then READ_CHUNK from the replicas, a few chunks ahead
// in parallel, each verified against its SHA-256, emitted in order through a Readable. Memory holds
// at most the chunks fetched ahead, never the whole file.

import { Readable } from 'node:stream';
import { call, readAll } from '../transport/index.js';
import { DfsError, type ErrorCode } from '../wire/errors.js';
import { READ_CHUNK } from '../protocol/ops.js';
import { sha256Hex } from '../workers/digest.js';
import type { WorkerPool } from '../workers/pool.js';
import { cancelled, throwIfCancelled, type ConnectionCache } from './connections.js';
import type { ChunkLocation, ReplicaFailure, ReplicaInfo, StatInfo } from './types.js';

/** Chunks fetched ahead of the reader. */
export const DEFAULT_READ_AHEAD = 4;
/** Deadline for one replica to deliver one whole chunk. */
export const DEFAULT_READ_TIMEOUT_MS = 60_000;

export interface GetOptions {
  signal?: AbortSignal;
  /** Chunks fetched at once ahead of the reader. Default 4. */
  readAhead?: number;
  /** Deadline for one replica to deliver one chunk, in ms; then the next replica is tried. Default 60 s. */
  readTimeoutMs?: number;
}

export interface DownloadContext {
  keepers: ConnectionCache;
  pool: () => WorkerPool;
  /** Reads in flight per keeper address, shared by the client's downloads, to spread the load. */
  readsInFlight: Map<string, number>;
  /** Tells the master a replica sent bytes that failed their checksum; best effort, never throws. */
  reportCorrupt?: (chunkId: string, keeperId: string, message: string) => void;
}

/** A file being read: a Readable of its bytes, with what STAT said about it. */
export class DfsReadStream extends Readable {
  readonly stat: StatInfo;
  private readonly ctx: DownloadContext;
  private readonly readAhead: number;
  private readonly timeoutMs: number;
  private readonly controller = new AbortController();
  private readonly fetches: Promise<Buffer>[] = [];
  private nextFetch = 0;
  private waiting = false;
  private readonly detachOuter: () => void;

  constructor(ctx: DownloadContext, stat: StatInfo, options: GetOptions = {}) {
    // The stream's own buffer is small: the read-ahead window is what holds chunks.
    super({ highWaterMark: 64 * 1024 });
    this.ctx = ctx;
    this.stat = stat;
    this.readAhead = Math.max(1, options.readAhead ?? DEFAULT_READ_AHEAD);
    this.timeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    const outer = options.signal;
    const onAbort = () => this.destroy(cancelled(outer!, `get ${stat.path} was cancelled`));
    outer?.addEventListener('abort', onAbort, { once: true });
    this.detachOuter = () => outer?.removeEventListener('abort', onAbort);
    if (outer?.aborted) queueMicrotask(onAbort);
  }

  get size(): number {
    return this.stat.size;
  }

  override _read(): void {
    if (this.waiting) return;
    this.fill();
    const next = this.fetches.shift();
    if (next === undefined) {
      this.push(null);
      return;
    }
    this.fill();
    this.waiting = true;
    next.then(
      (buf) => {
        this.waiting = false;
        if (this.destroyed) return;
        // push() asks for more through _read while below the high-water mark.
        this.push(buf);
      },
      (err) => {
        this.waiting = false;
        this.destroy(err as Error);
      },
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.detachOuter();
    // Fetches still running are stopped; after a normal end none is, and no error need be built.
    const running = this.waiting || this.fetches.length > 0;
    if (running && !this.controller.signal.aborted) this.controller.abort(err ?? new DfsError('CANCEL', `get ${this.stat.path}: reader closed`));
    callback(err);
  }

  /** Starts fetches until `readAhead` chunks are in flight or fetched and not yet emitted. */
  private fill(): void {
    while (this.fetches.length < this.readAhead && this.nextFetch < this.stat.chunks.length) {
      const index = this.nextFetch++;
      const p = fetchChunk(this.ctx, this.stat, index, this.controller.signal, this.timeoutMs);
      p.catch(() => {});
      this.fetches.push(p);
    }
  }
}

/**
 * Replicas in the order to try them for chunk `index`: live ones first, the least busy first, and
 * among equals rotated by the index. Load decides rather than the master's order alone, which may
 * correlate with the index and send every read to one keeper.
 */
export function replicaOrder(replicas: readonly ReplicaInfo[], index: number, load: (address: string) => number = () => 0): ReplicaInfo[] {
  const rotate = (list: ReplicaInfo[]) => {
    if (list.length === 0) return list;
    const k = index % list.length;
    return [...list.slice(k), ...list.slice(0, k)];
  };
  // Array.prototype.sort is stable, so equal loads keep the rotation.
  const byLoad = (list: ReplicaInfo[]) => rotate(list).sort((a, b) => load(a.address) - load(b.address));
  return [...byLoad(replicas.filter((r) => r.alive)), ...rotate(replicas.filter((r) => !r.alive))];
}

/** Reads and verifies one chunk, trying each replica in turn. */
export async function fetchChunk(ctx: DownloadContext, stat: StatInfo, index: number, signal: AbortSignal, timeoutMs: number): Promise<Buffer> {
  const chunk = stat.chunks[index]!;
  const failures: ReplicaFailure[] = [];
  const tried = new Set<string>();
  for (;;) {
    throwIfCancelled(signal, `get ${stat.path} was cancelled`);
    // Chosen afresh after each failure: the loads have moved on while this replica was tried.
    // Rotated by the chunk's id as well as its index, so files of one chunk do not all read from the first replica.
    const rotation = index + (Number.parseInt(chunk.id.slice(0, 6), 16) || 0);
    const replica = replicaOrder(chunk.replicas, rotation, (a) => ctx.readsInFlight.get(a) ?? 0).find((r) => !tried.has(r.address));
    if (replica === undefined) break;
    tried.add(replica.address);
    ctx.readsInFlight.set(replica.address, (ctx.readsInFlight.get(replica.address) ?? 0) + 1);
    try {
      return await readReplica(ctx, chunk, replica, signal, timeoutMs);
    } catch (err) {
      if (signal.aborted) throw cancelled(signal, `get ${stat.path} was cancelled`);
      const e = err instanceof DfsError ? err : new DfsError('INTERNAL_ERROR', String((err as Error)?.message ?? err));
      failures.push({ address: replica.address, code: e.code, message: e.message });
      if (e.code === 'CHECKSUM_MISMATCH') ctx.reportCorrupt?.(chunk.id, replica.id, e.message);
    } finally {
      const left = (ctx.readsInFlight.get(replica.address) ?? 1) - 1;
      if (left > 0) ctx.readsInFlight.set(replica.address, left);
      else ctx.readsInFlight.delete(replica.address);
    }
  }
  throw allReplicasFailed(stat.path, index, chunk, failures);
}

export function allReplicasFailed(path: string, index: number, chunk: ChunkLocation, failures: ReplicaFailure[]): DfsError {
  const what = `${path}: chunk ${index} (${chunk.id})`;
  if (failures.length === 0) return new DfsError('UNAVAILABLE', `${what} has no replicas`);
  // Every copy read was damaged: that is data loss, not an outage, and is reported as such.
  const code: ErrorCode = failures.every((f) => f.code === 'CHECKSUM_MISMATCH') ? 'CHECKSUM_MISMATCH' : 'UNAVAILABLE';
  const detail = failures.map((f) => `${f.address}: ${f.code}: ${f.message}`).join('; ');
  return new DfsError(code, `${what}: all ${failures.length} replicas failed: ${detail}`);
}

async function readReplica(ctx: DownloadContext, chunk: ChunkLocation, replica: ReplicaInfo, signal: AbortSignal, timeoutMs: number): Promise<Buffer> {
  // One deadline covers connecting, the reply and the whole body. A plain controller with one timer
  // does what AbortSignal.timeout and AbortSignal.any would, at a fraction of their cost per chunk.
  const read = new AbortController();
  const both = read.signal;
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    read.abort(new DfsError('DEADLINE_EXCEEDED', `no whole chunk within ${timeoutMs} ms`));
  }, timeoutMs);
  timer.unref();
  const onCancel = () => read.abort(signal.reason);
  signal.addEventListener('abort', onCancel, { once: true });
  try {
    const conn = await ctx.keepers.get(replica.address, both);
    const reply = await call(conn, READ_CHUNK, { chunkId: chunk.id }, { signal: both });
    const onAbort = () => reply.body.destroy(new DfsError('DEADLINE_EXCEEDED', `no whole chunk within ${timeoutMs} ms`));
    both.addEventListener('abort', onAbort, { once: true });
    let data: Buffer;
    try {
      data = await readAll(reply.body, chunk.size);
    } catch (err) {
      if (err instanceof DfsError && err.code === 'INVALID_ARGUMENT') {
        throw new DfsError('CHECKSUM_MISMATCH', `replica sent more than the chunk's ${chunk.size} bytes`);
      }
      throw err;
    } finally {
      both.removeEventListener('abort', onAbort);
    }
    if (data.length !== chunk.size) {
      throw new DfsError('CHECKSUM_MISMATCH', `replica sent ${data.length} bytes, the chunk has ${chunk.size}`);
    }
    const digest = await sha256Hex(data, ctx.pool);
    if (digest !== chunk.sha256) {
      throw new DfsError('CHECKSUM_MISMATCH', `replica's bytes hash to ${digest.slice(0, 12)}…, expected ${chunk.sha256.slice(0, 12)}…`);
    }
    return data;
  } catch (err) {
    if (expired && !signal.aborted) {
      throw new DfsError('DEADLINE_EXCEEDED', `no whole chunk within ${timeoutMs} ms`, { cause: err });
    }
    throw err;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onCancel);
  }
}
