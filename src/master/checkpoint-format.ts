// The byte layer of a master checkpoint file: a magic and version, a body of little-endian fields
// written by the state machine, and a trailer holding the SHA-256 of every byte before it, so a
// damaged or truncated checkpoint is refused as a whole instead of loading a partial state.
//
//   "DFSCKPT\n" (8 bytes) | version u32 | body ... | "DFSCKEND" (8 bytes) | sha256 (32 bytes)

import { createHash, type Hash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
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

/**
 * Bounds-checked reads over a checkpoint whose checksum was verified first, through a 1 MiB
 * window: a checkpoint of a million files is never held whole in memory.
 */
export class CheckpointReader {
  private buf = Buffer.allocUnsafe(BLOCK);
  /** File offset of buf[0]. */
  private base = 0;
  /** Bytes of `buf` holding file data. */
  private filled = 0;
  private at = 0;

  private constructor(private readonly fd: number, private readonly end: number, readonly file: string) {
    this.base = CHECKPOINT_MAGIC.length + 4;
  }

  /** Opens and verifies `file`; throws IO_ERROR naming it when it is truncated or damaged. */
  static open(file: string): CheckpointReader {
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      const damaged = (why: string) => new DfsError('IO_ERROR', `checkpoint ${file} is damaged: ${why}; it cannot be loaded`);
      const head = Buffer.alloc(CHECKPOINT_MAGIC.length + 4);
      if (size < head.length + TRAILER || readSync(fd, head, 0, head.length, 0) !== head.length ||
        !head.subarray(0, CHECKPOINT_MAGIC.length).equals(CHECKPOINT_MAGIC)) {
        throw damaged(`${size} bytes without a checkpoint header and trailer`);
      }
      const bodyEnd = size - 32;
      const hash = createHash('sha256');
      const block = Buffer.allocUnsafe(BLOCK);
      for (let off = 0; off < bodyEnd; ) {
        const n = readSync(fd, block, 0, Math.min(BLOCK, bodyEnd - off), off);
        if (n <= 0) throw damaged('it shrank while being read');
        hash.update(block.subarray(0, n));
        off += n;
      }
      const tail = Buffer.alloc(TRAILER);
      readSync(fd, tail, 0, TRAILER, size - TRAILER);
      if (!tail.subarray(0, END_MAGIC.length).equals(END_MAGIC)) throw damaged('the end marker is missing (truncated)');
      if (!hash.digest().equals(tail.subarray(END_MAGIC.length))) throw damaged('the SHA-256 of its content does not match its trailer');
      const version = head.readUInt32LE(CHECKPOINT_MAGIC.length);
      if (version !== CHECKPOINT_FORMAT) {
        throw new DfsError('IO_ERROR', `checkpoint ${file} has format ${version}; this dfs reads format ${CHECKPOINT_FORMAT}`);
      }
      return new CheckpointReader(fd, size - TRAILER, file);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Throws the error for content that passed its checksum yet makes no sense: a writer's bug. */
  bad(what: string): never {
    throw new DfsError('IO_ERROR', `checkpoint ${this.file} is not valid at byte ${this.base + this.at}: ${what}`);
  }

  /** Makes `n` bytes available at `buf[at]` and returns that index; later calls may move the window. */
  private need(n: number): number {
    if (this.at + n > this.filled) {
      if (this.base + this.at + n > this.end) this.bad(`a ${n}-byte field runs past the end`);
      const keep = this.filled - this.at;
      if (n > this.buf.length) {
        const bigger = Buffer.allocUnsafe(n);
        this.buf.copy(bigger, 0, this.at, this.filled);
        this.buf = bigger;
      } else {
        this.buf.copy(this.buf, 0, this.at, this.filled);
      }
      this.base += this.at;
      this.at = 0;
      this.filled = keep;
      while (this.filled < n) {
        const want = Math.min(this.buf.length - this.filled, this.end - (this.base + this.filled));
        const got = readSync(this.fd, this.buf, this.filled, want, this.base + this.filled);
        if (got <= 0) this.bad('the file ended early');
        this.filled += got;
      }
    }
    const at = this.at;
    this.at += n;
    return at;
  }

  get done(): boolean {
    return this.base + this.at === this.end;
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

  /**
   * Skips `bytes` raw bytes and returns where they start in `buffer`. Valid only until the next
   * read: take every field of a fixed-size record with one call.
   */
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
