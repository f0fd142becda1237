// Writing a file: BEGIN_UPLOAD (placing the first chunk too), then per chunk ALLOCATE_CHUNK and WRITE_CHUNK down a keeper pipeline,
// a few chunks at a time, then COMMIT with the replicas each chunk was acknowledged by. Until COMMIT
// the file is invisible; any failure or abort sends ABORT_UPLOAD, so a partial file never appears.

import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, readAll } from '../transport/index.js';
import { DfsError, type ErrorCode } from '../wire/errors.js';
import { ABORT_UPLOAD, ALLOCATE_CHUNK, BEGIN_UPLOAD, CHUNKS_BODY, COMMIT, WRITE_CHUNK } from '../protocol/ops.js';
import { encodeRecord, type Decoded } from '../wire/fields.js';
import { sha256Hex } from '../workers/digest.js';
import type { WorkerPool } from '../workers/pool.js';
import { chunkSource, checkChunkSize, checkSource, DEFAULT_CHUNK_SIZE, type UploadSource } from './chunker.js';
import { cancelled, throwIfCancelled, type ConnectionCache } from './connections.js';
import { backoffMs, type MasterLink } from './master-link.js';
import type { PutProgress, PutResult, ReplicaInfo } from './types.js';
import { MAX_REPLICATION } from '../master/entries.js';

/** Most replicas a file may ask for: the master's own limit (src/master/entries.ts), checked here first. */
export { MAX_REPLICATION };

/** Chunks written at once: memory is about (this + 1) × chunk size. */
export const DEFAULT_UPLOAD_CONCURRENCY = 3;
/** Pipelines tried per chunk before the upload fails. */
export const CHUNK_WRITE_ATTEMPTS = 5;
/** Deadline for a keeper pipeline to acknowledge one chunk. */
export const DEFAULT_WRITE_TIMEOUT_MS = 120_000;

export interface PutOptions {
  /** Replicas per chunk, 1..255. Default: the master's (3 unless it was started otherwise). */
  replication?: number;
  /** Bytes per chunk, up to 64 MiB. Default 8 MiB. */
  chunkSize?: number;
  signal?: AbortSignal;
  /** Called each time a chunk is acknowledged. */
  onProgress?: (progress: PutProgress) => void;
  /** Chunks in flight at once. Default 3. */
  concurrency?: number;
  /** Deadline for one chunk's pipeline acknowledgement, in ms. Default 120 s. */
  writeTimeoutMs?: number;
}

export interface UploadContext {
  master: MasterLink;
  keepers: ConnectionCache;
  pool: () => WorkerPool;
}

interface WrittenChunk {
  id: string;
  size: number;
  sha256: string;
  replicas: ReplicaInfo[];
}

export async function upload(ctx: UploadContext, path: string, source: UploadSource, options: PutOptions = {}): Promise<PutResult> {
  // 0 asks for the master's default replication.
  const replication = options.replication ?? 0;
  if (!Number.isInteger(replication) || replication < 0 || replication > MAX_REPLICATION) {
    throw new DfsError('INVALID_ARGUMENT', `put ${path}: replication ${replication} is outside 1..${MAX_REPLICATION}`);
  }
  const chunkSize = checkChunkSize(options.chunkSize ?? DEFAULT_CHUNK_SIZE);
  checkSource(source);
  const concurrency = Math.max(1, options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY);
  const outer = options.signal;
  throwIfCancelled(outer, `put ${path} was cancelled`);

  // The first chunk is read before the upload begins, so the master can place it in the same round
  // trip: a small file costs two requests to the master, not three.
  const chunks = chunkSource(source, chunkSize);
  // Failures of the source are told apart from the cluster's here, where they happen.
  const readSource = () => chunks.next().catch((err: unknown) => { throw sourceError(path, err); });
  let next: IteratorResult<Buffer>;
  let begun;
  // A source stuck waiting for input must not outlast the caller's abort.
  const stopSource = () => { if (source instanceof Readable) source.destroy(); };
  outer?.addEventListener('abort', stopSource, { once: true });
  try {
    next = await readSource();
    begun = await ctx.master.call(BEGIN_UPLOAD, {
      path, replication, chunkSize, ...(next.done ? {} : { firstChunk: next.value.length }),
    }, { signal: outer });
  } catch (err) {
    await chunks.return(undefined).catch(() => undefined);
    throw toPutError(path, err, outer);
  } finally {
    outer?.removeEventListener('abort', stopSource);
  }
  const { uploadId } = begun.response;
  const firstAllocation = begun.response.chunkId !== undefined && begun.response.keepers !== undefined
    ? { chunkId: begun.response.chunkId, keepers: begun.response.keepers as { id: string; address: string }[] } : undefined;
  const minReplicas = Math.max(1, begun.response.minReplicas);

  // One signal for the whole upload: the caller's abort, or the first chunk that fails for good.
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(cancelled(outer!, `put ${path} was cancelled`));
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  // An abort that landed while BEGIN_UPLOAD's reply was being handled fired no event.
  if (outer?.aborted) onOuterAbort();
  const signal = controller.signal;
  // A source stuck waiting for input must not hold up a failed upload.
  if (source instanceof Readable) signal.addEventListener('abort', () => source.destroy(), { once: true });

  const written: WrittenChunk[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  let size = 0;
  let done = { bytes: 0, chunks: 0 };
  const fail = (err: unknown) => {
    failure ??= err;
    if (!signal.aborted) controller.abort(err);
  };

  try {
    let index = 0;
    for (; !next.done; next = await readSource()) {
      const data = next.value;
      if (signal.aborted) break;
      const i = index++;
      size += data.length;
      const allocation = i === 0 ? firstAllocation : undefined;
      const job: Promise<void> = writeChunk(ctx, { uploadId, path, index: i, data, minReplicas, signal, timeoutMs: options.writeTimeoutMs, allocation })
        .then((chunk) => {
          written[i] = chunk;
          done = { bytes: done.bytes + chunk.size, chunks: done.chunks + 1 };
          options.onProgress?.(done);
        })
        .catch(fail)
        .finally(() => inFlight.delete(job));
      inFlight.add(job);
      // Bounded memory: read the next chunk only when a pipeline slot is free.
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (signal.aborted) break;
    }
    await chunks.return(undefined);
    await Promise.all(inFlight);
    if (signal.aborted) throw failure ?? cancelled(signal, `put ${path} was cancelled`);

    const body = encodeRecord(CHUNKS_BODY, { chunks: written });
    await ctx.master.call(COMMIT, { uploadId, size }, { signal: outer, body });
    return { path, size, chunks: written.length };
  } catch (err) {
    fail(err);
    await chunks.return(undefined).catch(() => undefined);
    await Promise.allSettled(inFlight);
    // Best effort, and not under the caller's signal: it may be the reason we are here.
    await ctx.master.call(ABORT_UPLOAD, { uploadId }, { timeoutMs: 5_000 }).catch(() => {});
    throw toPutError(path, failure ?? err, outer);
  } finally {
    outer?.removeEventListener('abort', onOuterAbort);
  }
}

interface ChunkJob {
  uploadId: string;
  path: string;
  index: number;
  data: Buffer;
  minReplicas: number;
  signal: AbortSignal;
  timeoutMs: number | undefined;
  /** Keepers already placed for this chunk (the first one, by BEGIN_UPLOAD): its first attempt asks no ALLOCATE_CHUNK. */
  allocation: { chunkId: string; keepers: { id: string; address: string }[] } | undefined;
}

/**
 * Writes one chunk until at least `minReplicas` keepers acknowledge it. A keeper that fails (as the
 * first hop, or in its own ack) is excluded from the next allocation, which gets a fresh chunk id.
 */
async function writeChunk(ctx: UploadContext, job: ChunkJob): Promise<WrittenChunk> {
  const { uploadId, data, signal } = job;
  const what = `chunk ${job.index} of ${job.path}`;
  const sha256 = await sha256Hex(data, ctx.pool);
  const exclude = new Set<string>();
  const attempts: string[] = [];
  /** Keepers that refused the chunk for lack of space. */
  const full = new Set<string>();
  let lastCode: ErrorCode = 'PIPELINE_FAILED';
  for (let attempt = 1; attempt <= CHUNK_WRITE_ATTEMPTS; attempt++) {
    throwIfCancelled(signal, `put ${job.path} was cancelled`);
    let allocated;
    try {
      allocated = attempt === 1 && job.allocation !== undefined
        ? { response: job.allocation }
        : await allocateWhenReady(ctx, { uploadId, size: data.length, ...(exclude.size > 0 ? { exclude: [...exclude] } : {}) }, signal);
    } catch (err) {
      // Out of keepers because the ones left said they are full: that is a full cluster, and says so.
      if (err instanceof DfsError && err.code === 'NOT_ENOUGH_KEEPERS' && full.size > 0) {
        throw new DfsError('NO_SPACE', `${what}: no keeper has room: ${full.size} refused for lack of space and the master has no other (${err.message})`, { cause: err });
      }
      throw err;
    }
    const { chunkId } = allocated.response;
    const keepers = allocated.response.keepers as { id: string; address: string }[];
    if (keepers.length === 0) {
      throw new DfsError('NOT_ENOUGH_KEEPERS', `${what}: the master offered no keepers${exclude.size > 0 ? ` (excluding ${[...exclude].join(', ')})` : ''}`);
    }
    const first = keepers[0]!;
    let acks: { keeperId: string; address: string; status: string; message?: string }[];
    try {
      const conn = await ctx.keepers.get(first.address, signal);
      const reply = await call(conn, WRITE_CHUNK, {
        chunkId, size: data.length, sha256, downstream: keepers.slice(1).map((k) => k.address),
      }, { body: data, signal, timeoutMs: job.timeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS });
      await readAll(reply.body, 64 * 1024).catch(() => {});
      acks = reply.response.acks;
    } catch (err) {
      if (signal.aborted) throw err;
      // The first hop failed as a whole: nothing downstream of it is known to hold the chunk.
      const e = err instanceof DfsError ? err : new DfsError('INTERNAL_ERROR', String((err as Error)?.message ?? err));
      exclude.add(first.id);
      if (e.code === 'NO_SPACE') full.add(first.id);
      lastCode = e.code === 'NO_SPACE' || e.code === 'CHECKSUM_MISMATCH' ? e.code : 'PIPELINE_FAILED';
      attempts.push(`attempt ${attempt}: keeper ${first.id} at ${first.address}: ${e.code}: ${e.message}`);
      await pause(attempt, signal);
      continue;
    }

    const replicas: ReplicaInfo[] = [];
    const problems: string[] = [];
    let firstBad: string | null = null;
    for (const keeper of keepers) {
      const ack = acks.find((a) => (a.keeperId !== '' && a.keeperId === keeper.id) || a.address === keeper.address);
      if (ack?.status === 'NO_ERROR') {
        replicas.push({ id: keeper.id, address: keeper.address, alive: true });
        continue;
      }
      firstBad ??= keeper.id;
      // PIPELINE_FAILED marks hops behind a failed one: not their fault, so they stay eligible.
      if (ack !== undefined && ack.status !== 'PIPELINE_FAILED') exclude.add(keeper.id);
      if (ack?.status === 'NO_SPACE') full.add(keeper.id);
      problems.push(`${keeper.id} at ${keeper.address}: ${ack ? `${ack.status}${ack.message ? ` (${ack.message})` : ''}` : 'no acknowledgement'}`);
    }
    if (replicas.length >= job.minReplicas) return { id: chunkId, size: data.length, sha256, replicas };
    // The first bad link of the pipeline is blamed even when it could not say what went wrong.
    if (firstBad !== null) exclude.add(firstBad);
    attempts.push(`attempt ${attempt}: ${replicas.length} of ${keepers.length} replicas written (need ${job.minReplicas}); ${problems.join('; ')}`);
    lastCode = 'PIPELINE_FAILED';
    await pause(attempt, signal);
  }
  throw new DfsError(lastCode, `${what}: could not store ${job.minReplicas} replicas in ${CHUNK_WRITE_ATTEMPTS} attempts: ${attempts.join(' | ')}`, { retriable: true });
}

/** How long a writer waits for a master that has just started and is still hearing from its keepers. */
export const MASTER_WARMUP_WAIT_MS = 15_000;

/** ALLOCATE_CHUNK, waiting out UNAVAILABLE from a master whose keepers are still reporting in. */
async function allocateWhenReady(ctx: UploadContext, request: Decoded<typeof ALLOCATE_CHUNK.request>, signal: AbortSignal) {
  const until = Date.now() + MASTER_WARMUP_WAIT_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await ctx.master.call(ALLOCATE_CHUNK, request, { signal });
    } catch (err) {
      if (!(err instanceof DfsError && err.code === 'UNAVAILABLE') || Date.now() >= until) throw err;
      await sleep(backoffMs(attempt, 100, 1000), undefined, { signal }).catch(() => {});
      throwIfCancelled(signal, 'put was cancelled');
    }
  }
}

async function pause(attempt: number, signal: AbortSignal): Promise<void> {
  if (attempt >= CHUNK_WRITE_ATTEMPTS) return;
  await sleep(backoffMs(attempt), undefined, { signal }).catch(() => {});
}

function toPutError(path: string, err: unknown, outer: AbortSignal | undefined): DfsError {
  if (outer?.aborted) return cancelled(outer, `put ${path} was cancelled`);
  if (err instanceof DfsError) return err;
  return new DfsError('INTERNAL_ERROR', `put ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/** An error of the source being uploaded, as a DfsError that says so. */
function sourceError(path: string, err: unknown): unknown {
  if (err instanceof DfsError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return new DfsError('NOT_FOUND', `put ${path}: source not found: ${e.message}`, { cause: err });
  return new DfsError('IO_ERROR', `put ${path}: reading the source failed: ${e?.message ?? String(err)}`, { cause: err });
}
