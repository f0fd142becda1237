// A keeper's chunks on local disk: verified on the way in, verified on the way out, and
// consistent after kill -9 at any instant, because a chunk only appears by renaming a complete, fsynced file.
//
// Layout of a data directory:
//   LOCK               pid of the keeper using it (dir-lock.ts)
//   chunks/ab/<id>     one file per chunk: header (chunk-header.ts) + data; `ab` = the id's first two digits
//   packs/             small chunks, appended to pack files (chunk-packs.ts)
//   tmp/               chunks being received; emptied at open, never listed
//   quarantine/        files found damaged, kept for inspection, never listed

import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { fsError } from '../workers/errors.js';
import { INLINE_HASH_MAX } from '../workers/digest.js';
import type { WorkerPool } from '../workers/pool.js';
import type { FileReadSession, FileWriteSession } from '../workers/file-io.js';
import {
  CHUNK_HEADER_SIZE,
  assertChunkId,
  assertSha256,
  decodeChunkHeader,
  encodeChunkHeader,
  isChunkId,
} from './chunk-header.js';
import { ChunkPacks, DEFAULT_PACK_TARGET, type Pack, type PackedRecord } from './chunk-packs.js';
import { quarantinePath } from './quarantine-name.js';
import { DirLock } from '../util/dir-lock.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { ensureDir } from '../util/ensure-dir.js';

/** Default largest chunk: 64 MiB. */
export const DEFAULT_MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/** Default piece size of readStream: 1 MiB. */
export const DEFAULT_READ_PIECE = 1024 * 1024;
/** Default largest chunk stored in a pack rather than a file of its own: 64 KiB. */
export const DEFAULT_PACK_MAX = 64 * 1024;

export interface ChunkStoreOptions {
  /** Workers that hash and do the chunk IO. Shared; the store does not close it. */
  pool: WorkerPool;
  /** Bytes of chunk data the store may hold (headers not counted). Default: no limit but the disk. */
  capacity?: number;
  /** Largest chunk accepted. Default 64 MiB. */
  maxChunkSize?: number;
  /** fsync chunk files and directories before acknowledging. Default true; only tests turn it off. */
  fsync?: boolean;
  /**
   * Chunks up to this many bytes go to pack files (no inode and no fsync of their own); larger ones
   * get a file each. 0 keeps every chunk in a file of its own. Default 64 KiB, at most 256 KiB.
   */
  packMax?: number;
  /** Pack size at which appends move on to a new pack. Default 64 MiB. */
  packTarget?: number;
  /**
   * Bytes the file system under the store can still take, as last measured (statfs); a write that
   * does not fit fails with NO_SPACE before a byte is written. Default: not checked.
   */
  diskFree?: () => number;
  /** Told of every IO_ERROR or NO_SPACE the disk itself raised (not the capacity limit), for health reports. */
  onDiskError?: (err: DfsError) => void;
  /** Told when a listed chunk's file turned out to be gone (removed behind the store's back); it is no longer listed. */
  onLost?: (id: string, reason: string) => void;
}

export interface ChunkInfo {
  id: string;
  size: number;
  sha256: string;
  /** ms since the epoch. */
  created: number;
}

/** What open found and repaired. */
export interface OpenReport {
  chunks: number;
  /** Leftovers of interrupted writes, deleted. */
  removedTemp: number;
  /** Files moved to quarantine/, with the reason. */
  quarantined: { name: string; reason: string }[];
  /** Files in chunks/ that are not chunks, left alone and not listed. */
  ignored: string[];
  /** Chunk files that could not be opened (errno code), not listed. */
  unreadable: { name: string; code: string }[];
}

function fanOut(id: string): string {
  return id.slice(0, 2);
}

const HEX = '0123456789abcdef';
const FAN_DIRS: string[] = [];
for (const a of HEX) for (const b of HEX) FAN_DIRS.push(a + b);

/** Runs fn over items with at most `limit` in flight. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

export class ChunkStore {
  readonly dir: string;
  readonly capacity: number;
  readonly maxChunkSize: number;
  /** What open found: removed temp files, quarantined and ignored files. */
  readonly report: OpenReport;
  private readonly pool: WorkerPool;
  private readonly fsync: boolean;
  private readonly diskFree: (() => number) | null;
  private readonly onDiskError: ((err: DfsError) => void) | null;
  private readonly onLost: ((id: string, reason: string) => void) | null;
  private readonly lock: DirLock;
  private readonly index = new Map<string, ChunkInfo>();
  /** The chunks of `index` that live in a pack, and where. */
  private readonly packed = new Map<string, PackedRecord>();
  private readonly packs: ChunkPacks;
  readonly packMax: number;
  /** Ids with a writer in progress: one writer per id at a time. */
  private readonly pending = new Map<string, ChunkWriter>();
  /** Ids whose file is being deleted or quarantined: a new write must not land before the old file is gone. */
  private readonly removing = new Set<string>();
  private usedBytes = 0;
  private tempSerial = 0;
  private reservedBytes = 0;
  /** Bytes a pack compaction in progress may still append: the disk must hold them beside new writes. */
  private compactingBytes = 0;
  /** The pack compaction in progress, if any. */
  private compacting: Promise<number> | null = null;
  private closed = false;

  private constructor(dir: string, opts: ChunkStoreOptions, lock: DirLock, report: OpenReport) {
    this.dir = dir;
    this.pool = opts.pool;
    this.capacity = opts.capacity ?? Number.POSITIVE_INFINITY;
    this.maxChunkSize = opts.maxChunkSize ?? DEFAULT_MAX_CHUNK_SIZE;
    this.fsync = opts.fsync ?? true;
    this.diskFree = opts.diskFree ?? null;
    this.onDiskError = opts.onDiskError ?? null;
    this.onLost = opts.onLost ?? null;
    this.lock = lock;
    this.report = report;
    this.packMax = opts.packMax ?? DEFAULT_PACK_MAX;
    this.packs = new ChunkPacks(join(dir, 'packs'), join(dir, 'quarantine'), opts.pool, this.fsync, opts.packTarget ?? DEFAULT_PACK_TARGET);
  }

  /**
   * Opens (creating if needed) a data directory: takes its lock, deletes leftover temp files,
   * and indexes every chunk by reading its header. Damaged chunk files go to quarantine/.
   */
  static async open(dir: string, opts: ChunkStoreOptions): Promise<ChunkStore> {
    const capacity = opts.capacity ?? Number.POSITIVE_INFINITY;
    if (!(capacity >= 0)) throw new DfsError('INVALID_ARGUMENT', `chunk store capacity must be >= 0, got ${capacity}`);
    const max = opts.maxChunkSize ?? DEFAULT_MAX_CHUNK_SIZE;
    if (!Number.isInteger(max) || max < 0) {
      throw new DfsError('INVALID_ARGUMENT', `maxChunkSize must be a non-negative integer, got ${max}`);
    }
    const packMax = opts.packMax ?? DEFAULT_PACK_MAX;
    if (!Number.isInteger(packMax) || packMax < 0 || packMax > INLINE_HASH_MAX) {
      throw new DfsError('INVALID_ARGUMENT', `packMax must be an integer from 0 to ${INLINE_HASH_MAX}, got ${packMax}`);
    }
    const packTarget = opts.packTarget ?? DEFAULT_PACK_TARGET;
    if (!Number.isInteger(packTarget) || packTarget < 1) {
      throw new DfsError('INVALID_ARGUMENT', `packTarget must be a positive integer, got ${packTarget}`);
    }
    const root = resolve(dir);
    try {
      await ensureDir(root);
    } catch (err) {
      throw fsError(err, `create data directory ${root}`);
    }
    const lock = await DirLock.acquire(root);
    try {
      const report: OpenReport = { chunks: 0, removedTemp: 0, quarantined: [], ignored: [], unreadable: [] };
      const store = new ChunkStore(lock.dir, opts, lock, report);
      await store.prepare();
      return store;
    } catch (err) {
      await lock.release();
      throw err instanceof DfsError ? err : fsError(err, `open data directory ${root}`);
    }
  }

  private async prepare(): Promise<void> {
    const chunks = join(this.dir, 'chunks');
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    await mkdir(join(this.dir, 'quarantine'), { recursive: true });
    await mkdir(join(this.dir, 'packs'), { recursive: true });
    await mkdir(chunks, { recursive: true });
    await eachLimited(FAN_DIRS, 16, (d) => mkdir(join(chunks, d), { recursive: true }).then(() => undefined));
    if (this.fsync) {
      await fsyncDir(chunks);
      await fsyncDir(this.dir);
    }

    // Interrupted writes: never acknowledged, so never needed.
    for (const name of await readdir(join(this.dir, 'tmp'))) {
      await rm(join(this.dir, 'tmp', name), { recursive: true, force: true });
      this.report.removedTemp++;
    }

    await eachLimited(FAN_DIRS, this.pool.size * 2, async (fan) => {
      const scan = await this.pool.scanDir(join(chunks, fan), CHUNK_HEADER_SIZE);
      for (const f of scan.failed) this.report.unreadable.push({ name: `${fan}/${f.name}`, code: f.code });
      for (let i = 0; i < scan.names.length; i++) {
        const name = scan.names[i]!;
        if (!isChunkId(name)) {
          this.report.ignored.push(`${fan}/${name}`);
          continue;
        }
        const at = i * CHUNK_HEADER_SIZE;
        const header = decodeChunkHeader(new Uint8Array(scan.prefixes, at, scan.prefixLengths[i]!));
        let reason: string | null = null;
        if ('invalid' in header) reason = header.invalid;
        else if (header.id !== name) reason = `header names chunk ${header.id}`;
        else if (fanOut(name) !== fan) reason = `misplaced in chunks/${fan}`;
        else if (scan.sizes[i] !== CHUNK_HEADER_SIZE + header.size) {
          reason = `file is ${scan.sizes[i]} bytes, header says ${CHUNK_HEADER_SIZE + header.size}`;
        }
        if (reason !== null || 'invalid' in header) {
          await this.moveToQuarantine(join(chunks, fan, name), name);
          this.report.quarantined.push({ name: `${fan}/${name}`, reason: reason! });
          continue;
        }
        this.index.set(name, { id: name, size: header.size, sha256: header.sha256, created: header.created });
        this.usedBytes += header.size;
      }
    });

    // The same chunk twice: a removal of an older copy (not fsynced, like every removal) was lost
    // while a newer copy, written after it, was durable. The older one may be the damaged replica
    // that was quarantined before the rewrite, so the newer one is kept: the later `created`, and
    // for equal times the later position (packs are scanned in order).
    const displaced: { id: string; record: PackedRecord | undefined; size: number }[] = [];
    const packScan = await this.packs.scan((header, record) => {
      const held = this.index.get(header.id);
      if (held !== undefined) {
        if (header.created < held.created) return false;
        displaced.push({ id: header.id, record: this.packed.get(header.id), size: held.size });
        this.usedBytes -= held.size;
      }
      this.index.set(header.id, { id: header.id, size: header.size, sha256: header.sha256, created: header.created });
      this.packed.set(header.id, record);
      this.usedBytes += header.size;
      return true;
    });
    for (const d of displaced) {
      if (d.record !== undefined) {
        await this.packs.markDead(d.record, d.id, d.size);
      } else {
        await this.moveToQuarantine(join(chunks, fanOut(d.id), d.id), d.id);
        this.report.quarantined.push({ name: `${fanOut(d.id)}/${d.id}`, reason: 'an older copy of a chunk also held, newer, in a pack' });
      }
    }
    this.report.quarantined.push(...packScan.damaged);
    this.report.chunks = this.index.size;
  }

  // ---- Queries ----

  has(id: string): boolean {
    assertChunkId(id);
    return this.index.has(id);
  }

  stat(id: string): ChunkInfo | undefined {
    assertChunkId(id);
    const info = this.index.get(id);
    return info === undefined ? undefined : { ...info };
  }

  /** Every stored chunk (the inventory a keeper reports). A snapshot. */
  list(): ChunkInfo[] {
    return Array.from(this.index.values(), (c) => ({ ...c }));
  }

  count(): number {
    return this.index.size;
  }

  /** Bytes of chunk data stored. */
  used(): number {
    return this.usedBytes;
  }

  /** Bytes promised to writers in progress. */
  reserved(): number {
    return this.reservedBytes;
  }

  // ---- Writing ----

  /**
   * Starts receiving a chunk. The bytes go to a temp file as they arrive, hashed on the way;
   * commit() makes the chunk visible only if size and SHA-256 match. An id already stored with the
   * same size and hash gives a writer that discards what it receives and commits at once (a retry);
   * with another hash, ALREADY_EXISTS.
   */
  async createWriter(id: string, expectedSize: number, expectedSha256: string): Promise<ChunkWriter> {
    this.assertOpen();
    assertChunkId(id);
    assertSha256(expectedSha256);
    if (!Number.isInteger(expectedSize) || expectedSize < 0 || expectedSize > this.maxChunkSize) {
      throw new DfsError(
        'INVALID_ARGUMENT',
        `chunk ${id}: size ${expectedSize} is not an integer from 0 to ${this.maxChunkSize}`,
      );
    }
    const existing = this.index.get(id);
    if (existing !== undefined) {
      if (existing.sha256 === expectedSha256 && existing.size === expectedSize) {
        return new ChunkWriter(this, id, expectedSize, expectedSha256, null);
      }
      throw new DfsError(
        'ALREADY_EXISTS',
        `chunk ${id} is already stored with another content (${existing.size} bytes, sha256 ${existing.sha256})`,
      );
    }
    if (this.pending.has(id) || this.removing.has(id)) {
      const doing = this.pending.has(id) ? 'written by another request' : 'deleted';
      throw new DfsError('ALREADY_EXISTS', `chunk ${id} is being ${doing}; retry once that finished`, {
        retriable: true,
      });
    }
    if (this.usedBytes + this.reservedBytes + expectedSize > this.capacity) {
      throw new DfsError(
        'NO_SPACE',
        `chunk ${id} (${expectedSize} bytes) does not fit: ${this.usedBytes} bytes stored and ` +
          `${this.reservedBytes} reserved of a ${this.capacity}-byte capacity`,
      );
    }
    if (this.diskFree !== null) {
      // Bytes reserved by writes in progress are partly on disk already: counting them whole errs
      // towards refusing early, never towards a write that runs into ENOSPC half-way.
      const free = this.diskFree();
      if (this.reservedBytes + this.compactingBytes + expectedSize + CHUNK_HEADER_SIZE > free) {
        throw new DfsError(
          'NO_SPACE',
          `chunk ${id} (${expectedSize} bytes) does not fit: the disk has ${free} bytes free and ` +
            `${this.reservedBytes} are reserved by writes in progress`,
        );
      }
    }
    // tmp/ is emptied at every open and an id has one writer at a time: a serial number is unique.
    const temp = join(this.dir, 'tmp', `${id}.${(this.tempSerial++).toString(16)}`);
    const writer = new ChunkWriter(this, id, expectedSize, expectedSha256, temp);
    this.pending.set(id, writer);
    this.reservedBytes += expectedSize;
    try {
      const header = encodeChunkHeader({ id, size: expectedSize, created: writer.created, sha256: expectedSha256 });
      if (expectedSize <= INLINE_HASH_MAX) {
        // A small chunk is gathered here (the bytes pass through this thread anyway), hashed here
        // and written by one worker request at commit: one message instead of one per step, and
        // no file at all for bytes that do not match. Large chunks stream to a worker as they arrive.
        writer._buffer = Buffer.allocUnsafeSlow(CHUNK_HEADER_SIZE + expectedSize);
        writer._buffer.set(header, 0);
        return writer;
      }
      writer._session = await this.pool.openFileWriter(temp, { prefix: header });
    } catch (err) {
      await this._release(writer);
      throw this._diskError(fsError(err, `chunk ${id}: create temp file`));
    }
    return writer;
  }

  /** @internal The final path of a chunk. */
  _path(id: string): string {
    return join(this.dir, 'chunks', fanOut(id), id);
  }

  /** @internal Renames the writer's temp file into place once the worker verified it. */
  async _commit(w: ChunkWriter, session: FileWriteSession): Promise<void> {
    await this.makeDurable(w, (place) => session.finish({ expect: w.sha256, ...place }));
  }

  /** @internal Verifies a small chunk gathered in memory, then writes, fsyncs and renames it in one worker request. */
  async _commitBuffered(w: ChunkWriter, buffer: Buffer): Promise<void> {
    const digest = createHash('sha256').update(buffer.subarray(CHUNK_HEADER_SIZE)).digest('hex');
    if (digest !== w.sha256) {
      await this._release(w);
      throw new DfsError('CHECKSUM_MISMATCH', `sha256 of ${w.size} bytes is ${digest}, expected ${w.sha256}`);
    }
    if (w.size <= this.packMax) {
      let record: PackedRecord;
      try {
        record = await this.packs.append(buffer);
      } catch (err) {
        await this._release(w);
        throw this._diskError(fsError(err, `chunk ${w.id}: commit`));
      }
      this.packed.set(w.id, record);
      this.indexCommitted(w);
      return;
    }
    await this.makeDurable(w, (place) => this.pool.writeFile(w.tempPath!, buffer, place));
  }

  /**
   * Runs the step that verifies, fsyncs and renames a chunk into place, then indexes it. On any
   * failure nothing of the write stays visible: the rename may already have happened before a
   * failing directory fsync, so the final file is removed too.
   */
  private async makeDurable(
    w: ChunkWriter,
    step: (place: { fsync: boolean; renameTo: string; syncDir?: string }) => Promise<unknown>,
  ): Promise<void> {
    const final = this._path(w.id);
    try {
      await step({ fsync: this.fsync, renameTo: final, ...(this.fsync ? { syncDir: join(this.dir, 'chunks', fanOut(w.id)) } : {}) });
    } catch (err) {
      await rm(final, { force: true }).catch(() => undefined);
      await this._release(w);
      throw this._diskError(fsError(err, `chunk ${w.id}: commit`));
    }
    this.indexCommitted(w);
  }

  private indexCommitted(w: ChunkWriter): void {
    this.pending.delete(w.id);
    this.reservedBytes -= w.size;
    this.index.set(w.id, { id: w.id, size: w.size, sha256: w.sha256, created: w.created });
    this.usedBytes += w.size;
  }

  /** @internal Passes an error the disk raised to onDiskError; returns it. */
  _diskError(err: DfsError): DfsError {
    if (err.code === 'IO_ERROR' || err.code === 'NO_SPACE') this.onDiskError?.(err);
    return err;
  }

  /** @internal Forgets a writer that will not commit: closes and deletes its temp file. */
  async _release(w: ChunkWriter): Promise<void> {
    if (this.pending.get(w.id) !== w) return;
    this.pending.delete(w.id);
    this.reservedBytes -= w.size;
    await w._session?.abort();
    if (w.tempPath !== null) await rm(w.tempPath, { force: true }).catch(() => undefined);
  }

  // ---- Reading ----

  /** The whole chunk, returned only if its SHA-256 still matches: a damaged replica fails with CHECKSUM_MISMATCH. */
  async read(id: string): Promise<{ data: Buffer; sha256: string }> {
    const info = this.lookup(id);
    try {
      if (this.packed.has(id)) return { data: await this.readPacked(id, info), sha256: info.sha256 };
      if (info.size <= INLINE_HASH_MAX) return { data: await this.readSmall(id, info), sha256: info.sha256 };
      const data = await this.pool.readVerified(this._path(id), {
        offset: CHUNK_HEADER_SIZE,
        length: info.size,
        sha256: info.sha256,
        fileSize: CHUNK_HEADER_SIZE + info.size,
      });
      return { data, sha256: info.sha256 };
    } catch (err) {
      throw this.readError(id, info, err);
    }
  }

  /**
   * A small chunk read with one positioned read (in libuv's threads) and hashed on this thread:
   * cheaper than a round trip to a worker below INLINE_HASH_MAX. One byte more than the chunk is
   * asked for, so a file that grew is caught as well as one that shrank.
   */
  private async readSmall(id: string, info: { size: number; sha256: string }): Promise<Buffer> {
    const fh = await open(this._path(id), 'r');
    try {
      const buf = Buffer.allocUnsafe(info.size + 1);
      const { bytesRead } = await fh.read(buf, 0, info.size + 1, CHUNK_HEADER_SIZE);
      const data = buf.subarray(0, bytesRead);
      if (bytesRead !== info.size) {
        throw new DfsError('CHECKSUM_MISMATCH', `chunk file holds ${bytesRead} bytes of data, its header says ${info.size}`);
      }
      const actual = createHash('sha256').update(data).digest('hex');
      if (actual !== info.sha256) {
        throw new DfsError('CHECKSUM_MISMATCH', `SHA-256 of the data is ${actual}, its header says ${info.sha256}`);
      }
      return data;
    } finally {
      await fh.close();
    }
  }

  /** A packed chunk's data, returned only if its SHA-256 matches. */
  private async readPacked(id: string, info: { size: number; sha256: string }): Promise<Buffer> {
    let data: Buffer;
    for (;;) {
      const record = this.packed.get(id);
      if (record === undefined) throw new DfsError('NOT_FOUND', `chunk ${id} was deleted while being read`);
      try {
        data = await this.packs.readData(record, info.size);
        break;
      } catch (err) {
        // Compaction moved the record and deleted its old pack meanwhile: read it where it is now.
        if (!record.pack.gone || this.packed.get(id) === record) throw err;
      }
    }
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== info.sha256) {
      throw new DfsError('CHECKSUM_MISMATCH', `SHA-256 of the packed data is ${actual}, its header said ${info.sha256}`);
    }
    return data;
  }

  /**
   * The chunk in pieces of `pieceSize` bytes, for big chunks, with one piece read ahead. The hash
   * can only be checked at the end: the iterator then throws CHECKSUM_MISMATCH, so a consumer must
   * not treat the bytes as good before the iteration completed.
   */
  async *readStream(id: string, opts: { pieceSize?: number } = {}): AsyncGenerator<Buffer, void, undefined> {
    const info = this.lookup(id);
    const pieceSize = opts.pieceSize ?? DEFAULT_READ_PIECE;
    if (!Number.isInteger(pieceSize) || pieceSize < 1) {
      throw new DfsError('INVALID_ARGUMENT', `readStream pieceSize must be a positive integer, got ${pieceSize}`);
    }
    if (this.packed.has(id)) {
      // Small enough to read whole, and verified before a byte is handed out.
      let data: Buffer;
      try {
        data = await this.readPacked(id, info);
      } catch (err) {
        throw this.readError(id, info, err);
      }
      for (let at = 0; at < data.length; at += pieceSize) yield data.subarray(at, at + pieceSize);
      return;
    }
    let session: FileReadSession;
    try {
      session = await this.pool.openFileReader(this._path(id), CHUNK_HEADER_SIZE);
    } catch (err) {
      throw this.readError(id, info, err);
    }
    let finished = false;
    try {
      let requested = 0;
      const request = (): Promise<Buffer> | null => {
        if (requested >= info.size) return null;
        const n = Math.min(pieceSize, info.size - requested);
        requested += n;
        const p = session.read(n);
        p.catch(() => undefined); // read ahead: an early return must not leave a rejection unhandled
        return p;
      };
      let next = request();
      let delivered = 0;
      while (next !== null) {
        const piece = await next;
        delivered += piece.length;
        // The worker reads until the piece is full or the file ends: a short piece is a truncated file.
        if (delivered !== requested) {
          throw new DfsError('CHECKSUM_MISMATCH', `file ends after ${delivered} of ${info.size} data bytes`);
        }
        next = request();
        yield piece;
      }
      await session.finish(info.sha256);
      finished = true;
    } catch (err) {
      throw this.readError(id, info, err);
    } finally {
      if (!finished) await session.abort();
    }
  }

  /**
   * Re-reads and re-hashes a stored chunk in the workers, without keeping its bytes: resolves if it
   * is intact, CHECKSUM_MISMATCH if not (a file that grew or shrank counts as damaged). `pace` is
   * awaited after each piece, so a background check can bound its rate and make way for clients.
   * The replica stays listed either way: what to do about damage is the caller's decision.
   */
  async verify(id: string, opts: { pieceSize?: number; pace?: (bytes: number) => Promise<void> } = {}): Promise<void> {
    const info = this.lookup(id);
    if (this.packed.has(id)) {
      try {
        await this.readPacked(id, info);
      } catch (err) {
        throw this.readError(id, info, err);
      }
      await opts.pace?.(info.size);
      return;
    }
    let fileSize: number;
    try {
      fileSize = (await stat(this._path(id))).size;
    } catch (err) {
      throw this.readError(id, info, err);
    }
    if (fileSize !== CHUNK_HEADER_SIZE + info.size) {
      throw new DfsError('CHECKSUM_MISMATCH',
        `chunk ${id} is damaged on this keeper: its file is ${fileSize} bytes, header and data make ${CHUNK_HEADER_SIZE + info.size}`);
    }
    for await (const piece of this.readStream(id, opts.pieceSize === undefined ? {} : { pieceSize: opts.pieceSize })) {
      await opts.pace?.(piece.length);
    }
  }

  private lookup(id: string): ChunkInfo {
    this.assertOpen();
    assertChunkId(id);
    const info = this.index.get(id);
    if (info === undefined) throw new DfsError('NOT_FOUND', `chunk ${id} is not stored on this keeper`);
    return info;
  }

  private readError(id: string, info: ChunkInfo, err: unknown): DfsError {
    const e = fsError(err, `chunk ${id}`);
    if (e.code === 'NOT_FOUND' && this.index.get(id) === info) {
      // The file vanished behind the store's back: stop listing it.
      this.index.delete(id);
      this.usedBytes -= info.size;
      const record = this.packed.get(id);
      if (record !== undefined) {
        // Its record no longer counts as live, or its pack would never be freed.
        this.packed.delete(id);
        void this.packs.markDead(record, id, info.size).catch(() => undefined);
      }
      this.onLost?.(id, e.message);
    }
    if (e.code === 'CHECKSUM_MISMATCH') {
      return new DfsError('CHECKSUM_MISMATCH', `chunk ${id} is damaged on this keeper: ${e.message}`, { cause: err });
    }
    return this._diskError(e);
  }

  // ---- Removing ----

  /**
   * Deletes a chunk; false if it was not stored. Not fsynced: a delete lost to a power failure
   * brings the chunk back, the next inventory reports it, and the master deletes it again.
   */
  delete(id: string): Promise<boolean> {
    return this.takeOut(id, async (path, record, size) => {
      if (record !== undefined) {
        try {
          await this.packs.markDead(record, id, size);
        } catch (err) {
          throw this._diskError(fsError(err, `delete chunk ${id}`));
        }
        return;
      }
      try {
        await rm(path, { force: true });
      } catch (err) {
        throw this._diskError(fsError(err, `delete chunk ${id}`));
      }
    });
  }

  /** Moves a chunk to quarantine/ (a damaged replica kept for inspection); false if it was not stored. */
  quarantine(id: string): Promise<boolean> {
    return this.takeOut(id, async (path, record, size) => {
      if (record === undefined) return this.moveToQuarantine(path, id);
      try {
        await this.packs.copyOut(record, size, quarantinePath(join(this.dir, 'quarantine'), id));
      } catch (err) {
        throw this._diskError(fsError(err, `quarantine chunk ${id}`));
      } finally {
        // Unlisted either way; a damaged copy that could not be kept aside is not worth keeping in place.
        await this.packs.markDead(record, id, size).catch(() => undefined);
      }
    });
  }

  /** Removes a chunk from the index and its space from `used`, then lets `move` deal with its file. */
  private async takeOut(id: string, move: (path: string, record: PackedRecord | undefined, size: number) => Promise<unknown>): Promise<boolean> {
    this.assertOpen();
    assertChunkId(id);
    const info = this.index.get(id);
    if (info === undefined) return false;
    this.index.delete(id);
    this.usedBytes -= info.size;
    const record = this.packed.get(id);
    this.packed.delete(id);
    this.removing.add(id);
    try {
      await move(this._path(id), record, info.size);
    } finally {
      this.removing.delete(id);
    }
    return true;
  }

  private async moveToQuarantine(path: string, name: string): Promise<void> {
    try {
      await rename(path, quarantinePath(join(this.dir, 'quarantine'), name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this._diskError(fsError(err, `quarantine ${path}`));
    }
  }

  // ---- Compaction ----

  /**
   * Frees the space of deleted packed chunks: the sealed pack with the largest dead share (at least
   * half) has its live records verified and appended to the newest pack, then is deleted. A record
   * that fails its hash is quarantined instead of copied. Returns the disk bytes freed (0: nothing done).
   * Crash-safe at any point: a record copied but not yet marked dead in its old pack is found twice
   * at the next open, and one copy is dropped.
   */
  async compactPacks(): Promise<number> {
    this.assertOpen();
    // One at a time, and close() waits for it.
    if (this.compacting !== null) return 0;
    this.compacting = this.compactOnce();
    try {
      return await this.compacting;
    } finally {
      this.compacting = null;
    }
  }

  private async compactOnce(): Promise<number> {
    await this.packs.retireActive();
    const pack = this.packs.compactionCandidate();
    if (pack === null) return 0;
    if (this.diskFree !== null && this.reservedBytes + this.compactingBytes + pack.liveBytes > this.diskFree()) {
      // The copies must fit beside the pack they leave until it is deleted; try again later.
      return 0;
    }
    const before = pack.size;
    const reserved = pack.liveBytes;
    let copied = 0;
    this.compactingBytes += reserved;
    try {
      const moving = [...this.packed].filter(([, r]) => r.pack === pack).map(([id]) => id);
      for (const id of moving) {
        if (this.closed) break; // the rest stays where it is, as valid as before
        copied += await this.moveRecord(id, pack);
      }
    } finally {
      this.compactingBytes -= reserved;
    }
    return pack.gone ? before - copied : 0;
  }

  /** Moves one live record of `pack` to the newest pack; returns the bytes it copied. */
  private async moveRecord(id: string, pack: Pack): Promise<number> {
    const record = this.packed.get(id);
    const info = this.index.get(id);
    if (record === undefined || record.pack !== pack || this.removing.has(id)) return 0;
    if (info === undefined) {
      // In a pack but no longer listed: counted dead here, or the pack would never be freed.
      this.packed.delete(id);
      await this.packs.markDead(record, id, 0);
      return 0;
    }
    let data: Buffer;
    try {
      data = await this.readPacked(id, info);
    } catch (err) {
      // Only the copy that was read: the chunk may have been deleted and written anew meanwhile.
      if (err instanceof DfsError && err.code === 'CHECKSUM_MISMATCH' && this.packed.get(id) === record) await this.quarantine(id).catch(() => false);
      else if (!(err instanceof DfsError && err.code === 'NOT_FOUND')) throw this._diskError(fsError(err, `compact chunk ${id}`));
      return 0;
    }
    const copy = Buffer.allocUnsafeSlow(CHUNK_HEADER_SIZE + data.length);
    copy.set(encodeChunkHeader({ id, size: info.size, created: info.created, sha256: info.sha256 }), 0);
    copy.set(data, CHUNK_HEADER_SIZE);
    const moved = await this.packs.append(copy);
    if (this.packed.get(id) === record) {
      this.packed.set(id, moved);
      await this.packs.markDead(record, id, info.size);
    } else {
      // Deleted (or quarantined) while it was being copied: the copy is dead on arrival.
      await this.packs.markDead(moved, id, info.size);
    }
    return copy.length;
  }

  // ---- Lifecycle ----

  /** Aborts writers in progress and releases the directory lock. The pool stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(Array.from(this.pending.values(), (w) => w.abort()));
    await this.compacting?.catch(() => 0);
    await this.packs.close();
    await this.lock.release();
  }

  private assertOpen(): void {
    if (this.closed) throw new DfsError('UNAVAILABLE', `chunk store ${this.dir} is closed`);
  }
}

type WriterState = 'open' | 'committing' | 'committed' | 'failed' | 'aborted';

/** Receives one chunk. Obtained from ChunkStore.createWriter. */
export class ChunkWriter {
  /** @internal */
  _session: FileWriteSession | null = null;
  /** @internal A small chunk's header and bytes, gathered in memory until commit (instead of a session). */
  _buffer: Buffer | null = null;
  /** ms since the epoch; recorded in the chunk header. */
  readonly created = Date.now();
  private state: WriterState = 'open';
  private receivedBytes = 0;
  private failure: DfsError | null = null;

  /** @internal */
  constructor(
    private readonly store: ChunkStore,
    readonly id: string,
    readonly size: number,
    readonly sha256: string,
    /** null when the chunk is already stored and this writer only absorbs a retry. */
    readonly tempPath: string | null,
  ) {}

  /** True when the same chunk was already stored: writes are discarded and commit succeeds. */
  get alreadyStored(): boolean {
    return this.tempPath === null;
  }

  get received(): number {
    return this.receivedBytes;
  }

  /**
   * Appends a piece. The piece is copied (or moved, with `transfer`, when it spans its whole
   * ArrayBuffer) to a worker; memory stays bounded if the caller awaits each write before the next.
   * Bytes beyond the declared size fail with CHECKSUM_MISMATCH and abort the write.
   */
  async write(piece: Uint8Array, opts: { transfer?: boolean } = {}): Promise<void> {
    this.assertWritable('write');
    if (this.receivedBytes + piece.byteLength > this.size) {
      await this.fail(
        new DfsError(
          'CHECKSUM_MISMATCH',
          `chunk ${this.id}: received ${this.receivedBytes + piece.byteLength} bytes, more than the declared ${this.size}`,
        ),
      );
    }
    if (this._buffer !== null) {
      this._buffer.set(piece, CHUNK_HEADER_SIZE + this.receivedBytes);
      this.receivedBytes += piece.byteLength;
      return;
    }
    this.receivedBytes += piece.byteLength;
    if (this._session === null) return;
    try {
      await this._session.write(piece, opts);
    } catch (err) {
      await this.fail(this.store._diskError(fsError(err, `chunk ${this.id}: write`)));
    }
  }

  /**
   * Makes the chunk visible if it has the declared size and SHA-256: the temp file is fsynced,
   * renamed into place and its directory fsynced before this resolves. Otherwise
   * CHECKSUM_MISMATCH, and the temp file is gone.
   */
  async commit(): Promise<void> {
    this.assertWritable('commit');
    if (this.receivedBytes !== this.size) {
      await this.fail(
        new DfsError('CHECKSUM_MISMATCH', `chunk ${this.id}: received ${this.receivedBytes} of ${this.size} declared bytes`),
      );
    }
    this.state = 'committing';
    if (this._session === null && this._buffer === null) {
      this.state = 'committed';
      return;
    }
    try {
      if (this._buffer !== null) await this.store._commitBuffered(this, this._buffer);
      else await this.store._commit(this, this._session!);
    } catch (err) {
      this.state = 'failed';
      this.failure = err as DfsError;
      throw err;
    }
    this.state = 'committed';
  }

  /** Drops the write and its temp file. Harmless after a failure; does nothing once commit started. */
  async abort(): Promise<void> {
    if (this.state === 'committing' || this.state === 'committed' || this.state === 'aborted') return;
    if (this.state === 'open') this.state = 'aborted';
    await this.store._release(this);
  }

  private assertWritable(what: string): void {
    if (this.state === 'open') return;
    if (this.failure !== null) throw this.failure;
    throw new DfsError('INVALID_ARGUMENT', `chunk ${this.id}: ${what} on a writer that is ${this.state}`);
  }

  private async fail(err: DfsError): Promise<never> {
    if (this.state === 'open') {
      this.state = 'failed';
      this.failure = err;
    }
    await this.store._release(this);
    throw this.failure ?? err;
  }
}
