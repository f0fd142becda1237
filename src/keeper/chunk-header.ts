// The header at the start of every chunk file, and the validation of chunk ids and digests.
// Data and metadata share one file so a single rename commits both: no chunk without its hash.

import { createHash } from 'node:crypto';
import { DfsError } from '../wire/errors.js';

/**
 * Layout, all integers big-endian:
 *
 *   0   4  magic "DFSC"
 *   4   2  format version (1)
 *   6   2  header length (96)
 *   8  16  chunk id
 *  24   8  data size in bytes
 *  32   8  creation time, ms since the epoch
 *  40  32  SHA-256 of the data
 *  72  16  reserved, zero
 *  88   8  first 8 bytes of the SHA-256 of bytes 0-87, so a damaged header is told from a damaged chunk
 *
 * The data follows at byte 96.
 */
export const CHUNK_HEADER_SIZE = 96;
export const CHUNK_FORMAT_VERSION = 1;
const MAGIC = 0x44465343; // "DFSC"
const CHECKED = 88;

export interface ChunkHeader {
  id: string;
  size: number;
  /** ms since the epoch. */
  created: number;
  sha256: string;
}

const ID_RE = /^[0-9a-f]{32}$/;
const SHA_RE = /^[0-9a-f]{64}$/;

export function isChunkId(id: unknown): id is string {
  return typeof id === 'string' && ID_RE.test(id);
}

/** Rejects anything but 32 lowercase hex digits: ids become file names, so nothing else may pass. */
export function assertChunkId(id: unknown): asserts id is string {
  if (!isChunkId(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}…` : id) : typeof id;
    throw new DfsError('INVALID_ARGUMENT', `invalid chunk id ${shown}: expected 32 lowercase hex digits`);
  }
}

export function assertSha256(sha256: unknown): asserts sha256 is string {
  if (typeof sha256 !== 'string' || !SHA_RE.test(sha256)) {
    throw new DfsError('INVALID_ARGUMENT', `invalid sha256 ${JSON.stringify(String(sha256).slice(0, 80))}: expected 64 lowercase hex digits`);
  }
}

function check(header: Uint8Array): Buffer {
  return createHash('sha256').update(header.subarray(0, CHECKED)).digest().subarray(0, 8);
}

export function encodeChunkHeader(h: ChunkHeader): Buffer {
  const b = Buffer.alloc(CHUNK_HEADER_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b.writeUInt16BE(CHUNK_FORMAT_VERSION, 4);
  b.writeUInt16BE(CHUNK_HEADER_SIZE, 6);
  b.write(h.id, 8, 16, 'hex');
  b.writeBigUInt64BE(BigInt(h.size), 24);
  b.writeBigUInt64BE(BigInt(h.created), 32);
  b.write(h.sha256, 40, 32, 'hex');
  check(b).copy(b, CHECKED);
  return b;
}

/** The header, or a reason it is not a valid one. */
export function decodeChunkHeader(bytes: Uint8Array): ChunkHeader | { invalid: string } {
  if (bytes.length < CHUNK_HEADER_SIZE) return { invalid: `file is shorter than the ${CHUNK_HEADER_SIZE}-byte header` };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, CHUNK_HEADER_SIZE);
  if (b.readUInt32BE(0) !== MAGIC) return { invalid: 'bad magic' };
  const version = b.readUInt16BE(4);
  if (version !== CHUNK_FORMAT_VERSION) return { invalid: `unsupported chunk format version ${version}` };
  if (b.readUInt16BE(6) !== CHUNK_HEADER_SIZE) return { invalid: `bad header length ${b.readUInt16BE(6)}` };
  if (!check(b).equals(b.subarray(CHECKED, CHUNK_HEADER_SIZE))) return { invalid: 'header check failed' };
  const size = b.readBigUInt64BE(24);
  const created = b.readBigUInt64BE(32);
  if (size > BigInt(Number.MAX_SAFE_INTEGER) || created > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { invalid: 'size or time out of range' };
  }
  return {
    id: b.toString('hex', 8, 24),
    size: Number(size),
    created: Number(created),
    sha256: b.toString('hex', 40, 72),
  };
}
