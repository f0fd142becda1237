// The byte layer of a master checkpoint file: a magic and version, a body of little-endian fields
// written by the state machine, and a trailer holding the SHA-256 of every byte before it, so a
// damaged or truncated checkpoint is refused as a whole instead of loading a partial state.
//
//   "DFSCKPT\n" (8 bytes) | version u32 | body ... | "DFSCKEND" (8 bytes) | sha256 (32 bytes)

import { createHash, type Hash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { DfsError } from '../wire/errors.js';

export const CHECKPOINT_MAGIC = Buffer.from('DFSCKPT\n', 'latin1');
const END_MAGIC = Buffer.from('DFSCKEND', 'latin1');
export const CHECKPOINT_FORMAT = 1;
const TRAILER = END_MAGIC.length + 32;
const BLOCK = 1 << 20;

/** Appends fields into 1 MiB blocks, hashing and writing each block as it fills. */
export class CheckpointWriter {
  private buf = Buffer.allocUnsafe(BLOCK);
  private at = 0;
  private readonly hash: Hash = createHash('sha256');
  private written = 0;

  constructor(private readonly fd: number) {
    this.raw(CHECKPOINT_MAGIC);
    this.u32(CHECKPOINT_FORMAT);
  }

  get bytes(): number {
    return this.written + this.at;
  }

  private room(n: number): void {
    if (this.at + n > this.buf.length) {
      this.flush();
      if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    }
  }

  private flush(): void {
    if (this.at === 0) return;
    const block = this.buf.subarray(0, this.at);
    this.hash.update(block);
    for (let off = 0; off < block.length; ) off += writeSync(this.fd, block, off, block.length - off);
    this.written += this.at;
    this.at = 0;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }

  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16LE(v, this.at);
    this.at += 2;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.at);
    this.at += 4;
  }

  /** Any safe integer or time in milliseconds, as a float64: exact up to 2^53. */
  num(v: number): void {
    this.room(8);
    this.buf.writeDoubleLE(v, this.at);
    this.at += 8;
  }

  str(s: string): void {
    const max = Buffer.byteLength(s, 'utf8');
    this.room(4 + max);
    this.buf.writeUInt32LE(max, this.at);
    this.at += 4 + this.buf.write(s, this.at + 4, 'utf8');
  }

  /** A lowercase hex id or digest of `bytes` bytes, stored raw. */
  hex(s: string, bytes: number): void {
    this.room(bytes);
    this.at += this.buf.write(s, this.at, bytes, 'hex');
  }

  raw(b: Uint8Array, start = 0, end = b.length): void {
    this.room(end - start);
    this.buf.set(b.subarray(start, end), this.at);
    this.at += end - start;
  }

  /** Writes the trailer and everything still buffered. The caller fsyncs and closes the file. */
  finish(): void {
    this.raw(END_MAGIC);
    this.flush();
    const digest = this.hash.digest();
    for (let off = 0; off < digest.length; ) off += writeSync(this.fd, digest, off, digest.length - off);
    this.written += digest.length;
  }
}

/** Bounds-checked reads over a whole checkpoint whose checksum was verified first. */
export class CheckpointReader {
  private at: number;
  private readonly end: number;

  private constructor(private readonly buf: Buffer, readonly file: string) {
    this.at = CHECKPOINT_MAGIC.length + 4;
    this.end = buf.length - TRAILER;
  }

  /** Reads and verifies `file`; throws IO_ERROR naming it when it is truncated or damaged. */
  static open(file: string): CheckpointReader {
    const buf = readFileSync(file);
    const damaged = (why: string) => new DfsError('IO_ERROR', `checkpoint ${file} is damaged: ${why}; it cannot be loaded`);
    if (buf.length < CHECKPOINT_MAGIC.length + 4 + TRAILER || !buf.subarray(0, CHECKPOINT_MAGIC.length).equals(CHECKPOINT_MAGIC)) {
      throw damaged(`${buf.length} bytes without a checkpoint header and trailer`);
    }
    const bodyEnd = buf.length - 32;
    if (!buf.subarray(bodyEnd - END_MAGIC.length, bodyEnd).equals(END_MAGIC)) throw damaged('the end marker is missing (truncated)');
    const digest = createHash('sha256').update(buf.subarray(0, bodyEnd)).digest();
    if (!digest.equals(buf.subarray(bodyEnd))) throw damaged('the SHA-256 of its content does not match its trailer');
    const version = buf.readUInt32LE(CHECKPOINT_MAGIC.length);
    if (version !== CHECKPOINT_FORMAT) {
      throw new DfsError('IO_ERROR', `checkpoint ${file} has format ${version}; this dfs reads format ${CHECKPOINT_FORMAT}`);
    }
    return new CheckpointReader(buf, file);
  }

  /** Throws the error for content that passed its checksum yet makes no sense: a writer's bug. */
  bad(what: string): never {
    throw new DfsError('IO_ERROR', `checkpoint ${this.file} is not valid at byte ${this.at}: ${what}`);
  }

  private need(n: number): number {
    const at = this.at;
    if (at + n > this.end) this.bad(`a ${n}-byte field runs past the end`);
    this.at = at + n;
    return at;
  }

  get done(): boolean {
    return this.at === this.end;
  }

  u8(): number {
    return this.buf[this.need(1)];
  }

  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }

  num(): number {
    return this.buf.readDoubleLE(this.need(8));
  }

  str(): string {
    const n = this.u32();
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  }

  hex(bytes: number): string {
    const at = this.need(bytes);
    return this.buf.toString('hex', at, at + bytes);
  }

  /** Skips `bytes` raw bytes and returns where they start in `buffer`, for a copy without a slice. */
  raw(bytes: number): number {
    return this.need(bytes);
  }

  get buffer(): Buffer {
    return this.buf;
  }
}

/**
 * Writes a checkpoint durably under `file`: a temporary file beside it, fsync, rename, and the
 * caller fsyncs the directory. `body` writes the fields. Returns the bytes written.
 */
export function writeCheckpointFile(file: string, body: (w: CheckpointWriter) => void): number {
  const temp = `${file}.tmp`;
  const fd = openSync(temp, 'w');
  let bytes: number;
  try {
    const w = new CheckpointWriter(fd);
    body(w);
    w.finish();
    bytes = w.bytes;
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  return bytes;
}
