// The messages between the pool (event loop thread) and its worker threads.
// Requests carry a job id; each reply names the id it answers. Bytes travel as transferred ArrayBuffers.

/** Bytes handed to a worker: a whole ArrayBuffer moved (never shared) to the worker. */
export interface Bytes {
  buffer: ArrayBuffer;
  offset: number;
  length: number;
}

export type SessionMode = 'hash' | 'write' | 'read';

/** Hash a whole buffer. */
export interface Sha256Request {
  op: 'sha256';
  data: Bytes;
}

/** Start a session pinned to this worker: a running hash, and for files an open descriptor. */
export interface OpenRequest {
  op: 'open';
  sid: number;
  mode: SessionMode;
  /** write: the file to create (it must not exist); read: the file to read. */
  path?: string;
  /** write: bytes written before the hashed data (a header); they are not hashed. */
  prefix?: Bytes;
  /** read: where hashed data starts. */
  position?: number;
}

/** Hash bytes (and for write sessions, append them to the file). */
export interface UpdateRequest {
  op: 'update';
  sid: number;
  data: Bytes;
}

/** read sessions: read and hash the next bytes. */
export interface ReadRequest {
  op: 'read';
  sid: number;
  length: number;
}

/** End a session: fsync and close its file, compare the digest, optionally rename the file into place. */
export interface DigestRequest {
  op: 'digest';
  sid: number;
  /** Lowercase hex SHA-256 the data must have; a different digest fails with CHECKSUM_MISMATCH. */
  expect?: string;
  /** write: fsync the file before closing it. */
  fsync?: boolean;
  /** write: rename the file here once the digest matched. */
  renameTo?: string;
  /** fsync this directory after the rename, so the new name survives a crash. */
  syncDir?: string;
}

/**
 * Create a file (it must not exist), write the bytes, fsync and close it, then optionally rename it
 * and fsync a directory: a small file made durable in one request instead of a session's three.
 */
export interface WriteFileRequest {
  op: 'writeFile';
  path: string;
  data: Bytes;
  fsync: boolean;
  renameTo?: string;
  syncDir?: string;
}

/**
 * Write the bytes at `position` of a file, fdatasync (unless `fsync` is false) and close it: a batch
 * of records appended to a pack. `create` makes the file (it must not exist) and then fsyncs
 * `syncDir`, so the new name survives a crash too; otherwise the file must exist.
 */
export interface WriteAtRequest {
  op: 'writeAt';
  path: string;
  data: Bytes;
  position: number;
  create: boolean;
  fsync: boolean;
  syncDir?: string;
}

/** Drop a session and close its file. Never fails. */
export interface AbortRequest {
  op: 'abort';
  sid: number;
}

/** Read length bytes at offset, hash them and compare; the bytes come back only if they match. */
export interface ReadVerifiedRequest {
  op: 'readVerified';
  path: string;
  offset: number;
  length: number;
  expect: string;
  /** The size the whole file must have; a different size fails with CHECKSUM_MISMATCH. */
  fileSize?: number;
}

/** List a directory's regular files with their sizes and first prefixBytes bytes. */
export interface ScanDirRequest {
  op: 'scanDir';
  path: string;
  prefixBytes: number;
}

export type Request =
  | Sha256Request
  | OpenRequest
  | UpdateRequest
  | ReadRequest
  | DigestRequest
  | WriteFileRequest
  | WriteAtRequest
  | AbortRequest
  | ReadVerifiedRequest
  | ScanDirRequest;

/** A request as a session or the pool builds it; the pool adds the bytes when it sends it. */
export type RequestDraft = Request extends infer R ? (R extends { data: Bytes } ? Omit<R, 'data'> : R) : never;

export type RequestMessage = Request & { id: number; create?: boolean };

export interface ScanResult {
  names: string[];
  sizes: number[];
  /** Bytes read from each file's start (fewer than asked for short files). */
  prefixLengths: number[];
  /** All prefixes, prefixBytes apart. */
  prefixes: ArrayBuffer;
  /** Files that could not be read, with the errno code. */
  failed: { name: string; code: string }[];
}

export interface Result {
  digest?: string;
  bytes?: number;
  data?: ArrayBuffer;
  length?: number;
  scan?: ScanResult;
}

/** An error as it crosses the thread boundary: errno details for system errors, a dfs code for dfs ones. */
export interface WireSafeError {
  message: string;
  /** An errno name (ENOSPC) or a dfs code (CHECKSUM_MISMATCH). */
  code?: string;
  syscall?: string;
  path?: string;
  /** True when code is a dfs error code rather than an errno name. */
  dfs?: boolean;
}

export interface ReplyMessage {
  id: number;
  ok: boolean;
  result?: Result;
  error?: WireSafeError;
  /** A descriptor the worker opened for a session, so the pool can close it if the worker dies. */
  fdOpened?: number;
  /** A descriptor the worker closed. */
  fdClosed?: number;
}

/** Sent once by a worker when it listens for requests. */
export interface ReadyMessage {
  ready: true;
}

/**
 * How bytes reach a worker. 'copy': copied once into an exactly sized ArrayBuffer which is then
 * moved (cloning a view would copy its whole backing buffer, which for a slice of a socket read is
 * many times the slice). 'move-if-whole': the caller gives the buffer away; if it spans its whole
 * ArrayBuffer that is moved (zero copy, the caller's view becomes empty), otherwise copied.
 * 'move': the caller gives the whole ArrayBuffer away even though the view covers only part of it.
 */
export type Transfer = 'copy' | 'move-if-whole' | 'move';

export function toBytes(data: Uint8Array, transfer: Transfer): Bytes {
  if (transfer !== 'copy' && data.buffer instanceof ArrayBuffer) {
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    if (whole || transfer === 'move') return { buffer: data.buffer, offset: data.byteOffset, length: data.byteLength };
  }
  const copy = new ArrayBuffer(data.byteLength);
  new Uint8Array(copy).set(data);
  return { buffer: copy, offset: 0, length: data.byteLength };
}
