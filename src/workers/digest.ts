// SHA-256 of a whole buffer where it costs least: on the calling thread when the buffer is small,
// in the pool's workers when it is large.

import { createHash } from 'node:crypto';
import type { WorkerPool } from './pool.js';

/**
 * Buffers up to this size are hashed on the calling thread. Below it node:crypto is cheaper than a
 * round trip to a worker (4 KiB hashes in under 10 µs with SHA extensions, while posting the bytes
 * and the reply costs the event loop tens of µs and adds latency); above it, hashing would hold the
 * event loop for long stretches, which is what the workers are for.
 */
export const INLINE_HASH_MAX = 256 * 1024;

/**
 * Lowercase hex SHA-256 of `data`. `pool` is asked for only when the bytes go to a worker, so a
 * process that only handles small buffers never starts one.
 */
export function sha256Hex(data: Uint8Array, pool: () => WorkerPool): Promise<string> {
  if (data.byteLength <= INLINE_HASH_MAX) return Promise.resolve(createHash('sha256').update(data).digest('hex'));
  return pool().sha256(data);
}
