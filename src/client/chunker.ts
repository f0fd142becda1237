// Cuts an upload's source into chunk-sized buffers: every chunk but the last is exactly `chunkSize`
// bytes, because readers locate byte offsets as index × chunkSize. Pulls from the source only as
// chunks are taken, so memory stays at one chunk being filled.

import type { Readable } from 'node:stream';
import { DfsError } from '../wire/errors.js';

export type UploadSource = Buffer | Uint8Array | Readable | AsyncIterable<Buffer | Uint8Array | string>;

/** Default chunk size: 8 MiB. */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
/** Largest chunk size a client asks for: 64 MiB, the keepers' default limit. */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** Smallest chunk size the command line accepts: 4 KiB (the API takes down to 1 byte, for tests). */
export const MIN_CLI_CHUNK_SIZE = 4 * 1024;

export function checkChunkSize(chunkSize: number): number {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    const why = Number.isFinite(chunkSize) && !Number.isInteger(chunkSize) ? 'is not a whole number of bytes' : `is outside 1..${MAX_CHUNK_SIZE} bytes (64 MiB)`;
    throw new DfsError('INVALID_ARGUMENT', `chunk size ${chunkSize} ${why}`);
  }
  return chunkSize;
}

/** Throws INVALID_ARGUMENT unless `source` is something chunkSource can read. */
export function checkSource(source: unknown): asserts source is UploadSource {
  if (source instanceof Uint8Array || isAsyncIterable(source)) return;
  throw new DfsError('INVALID_ARGUMENT', 'an upload source must be a Buffer, a Readable or an async iterable of Buffers');
}

/**
 * Yields the source as chunks of exactly `chunkSize` bytes, the last one shorter (never empty).
 * An empty source yields nothing. A Buffer source is sliced without copying; a stream's pieces are
 * copied into one fresh buffer per chunk, so a chunk never aliases memory the source reuses.
 */
export async function* chunkSource(source: UploadSource, chunkSize: number): AsyncGenerator<Buffer> {
  checkChunkSize(chunkSize);
  if (source instanceof Uint8Array) {
    const buf = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    for (let at = 0; at < buf.length; at += chunkSize) yield buf.subarray(at, Math.min(at + chunkSize, buf.length));
    return;
  }
  checkSource(source);
  let chunk: Buffer | null = null;
  let filled = 0;
  for await (const piece of source) {
    let bytes = typeof piece === 'string' ? Buffer.from(piece) : piece;
    while (bytes.length > 0) {
      chunk ??= Buffer.allocUnsafe(chunkSize);
      const take = Math.min(bytes.length, chunkSize - filled);
      chunk.set(take === bytes.length ? bytes : bytes.subarray(0, take), filled);
      filled += take;
      bytes = bytes.subarray(take);
      if (filled === chunkSize) {
        const full: Buffer = chunk;
        chunk = null;
        filled = 0;
        yield full;
      }
    }
  }
  if (chunk !== null && filled > 0) yield chunk.subarray(0, filled);
}

function isAsyncIterable(x: unknown): x is AsyncIterable<Buffer | Uint8Array | string> {
  return x !== null && typeof x === 'object' && typeof (x as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
}
