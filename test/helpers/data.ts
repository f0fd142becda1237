// Test data that never has to sit in memory whole: random pieces hashed as they are made, and
// streams hashed as they are read.

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** `total` random bytes in pieces of `piece`, each added to `digest` as it is made. */
export function* randomPieces(total: number, piece: number, digest: Hash): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += piece) {
    const b = randomBytes(Math.min(piece, total - sent));
    digest.update(b);
    yield b;
  }
}

export async function readAllOf(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

/** Reads a stream to its end, keeping only its length and SHA-256. */
export async function hashOf(stream: Readable): Promise<{ size: number; sha256: string }> {
  const digest = createHash('sha256');
  let size = 0;
  for await (const p of stream) {
    digest.update(p as Buffer);
    size += (p as Buffer).length;
  }
  return { size, sha256: digest.digest('hex') };
}
