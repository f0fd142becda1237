// Small chunks packed into append-only files. A chunk in a file of its own costs a new inode, two
// fsyncs (file and directory) and a rename; in a pack it costs an append and a share of one
// fdatasync for every chunk that arrived meanwhile (group commit).
//
// Layout, under <data>/packs/:
//   <seq>.pack   records back to back; a record is a chunk header (chunk-header.ts) and its data
//   <seq>.deleted  records deleted or quarantined since they were written, 16 bytes each: the
//                record's offset (8 bytes, big-endian) and the first 8 bytes of its chunk id, so an
//                entry that a crash tore or left zero-filled matches no record and deletes nothing
//   <seq>.dead   the same list as written by the first version of packs: offsets alone, 8 bytes
//                each. Still read, never written; deleted with its pack
// <seq> is 16 hex digits; the newest pack takes the appends, older ones only lose records.
//
// A record is acknowledged only once the batch holding it is fdatasynced, so a crash can only cut
// the batch being written: a torn tail, cut off (and kept in quarantine/) when the packs are opened.
// A pack whose every record is dead is deleted whole. The dead lists are not fsynced, like the
// deletion of a chunk file: a deletion lost to a power failure brings the chunk back, the keeper
// reports it, and the master deletes it again.

import { appendFile, open, readFile, readdir, rm, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DfsError } from '../wire/errors.js';
import type { WorkerPool } from '../workers/pool.js';
import { CHUNK_HEADER_SIZE, decodeChunkHeader, type ChunkHeader } from './chunk-header.js';
import { quarantinePath } from './quarantine-name.js';

/** Default pack size at which the next batch starts a new pack. */
export const DEFAULT_PACK_TARGET = 64 * 1024 * 1024;
/** Most records, and bytes, one batch (one write and one fdatasync) carries. */
const BATCH_RECORDS = 1024;
const BATCH_BYTES = 8 * 1024 * 1024;
/** Window of the scan at open. */
const SCAN_WINDOW = 1024 * 1024;
const MAGIC = Buffer.from('DFSC', 'latin1');
const PACK_RE = /^([0-9a-f]{16})\.(pack|deleted|dead)$/;
const MAX_SEQ = 2 ** 48;
/** Bytes of one .deleted entry: the record's offset and the first 8 bytes of its chunk id. */
const DEAD_ENTRY = 16;
/** Bytes of one entry of a first-version .dead list: the record's offset. */
const LEGACY_DEAD_ENTRY = 8;

/** One pack file. */
export interface Pack {
  readonly seq: number;
  readonly path: string;
  /** Bytes written or being written: where the next batch goes. */
  size: number;
  /** Records stored and not dead. */
  live: number;
  /** Bytes of those records, headers included: what compaction would have to copy. */
  liveBytes: number;
  /** No more appends: an older pack, or one whose write failed. */
  sealed: boolean;
  /** Deleted from disk: its records are gone. */
  gone: boolean;
  /** Read handle, opened on first read. */
  handle: Promise<FileHandle> | null;
  /** Handles dropped after an error, closed once no read is in progress. */
  stale: Promise<FileHandle>[];
  /** Reads in progress on the handle: it is closed only when none are. */
  readers: number;
}

/** Where a packed chunk lives: the offset of its record's header. */
export interface PackedRecord {
  pack: Pack;
  offset: number;
}

/** What the scan at open found besides records. */
export interface PackScanReport {
  /** Byte ranges that held no valid record, moved to quarantine/ (a torn tail) or skipped (damage inside). */
  damaged: { name: string; reason: string }[];
  /** Leftover dead lists of packs that are gone, deleted. */
  removedDeadLists: number;
}

interface Append {
  record: Buffer;
  resolve: (r: PackedRecord) => void;
  reject: (e: unknown) => void;
}

export class ChunkPacks {
  private readonly packs = new Map<number, Pack>();
  private active: Pack | null = null;
  private nextSeq = 1;
  private queue: Append[] = [];
  private flushing: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    private readonly quarantineDir: string,
    private readonly pool: WorkerPool,
    private readonly fsync: boolean,
    private readonly target = DEFAULT_PACK_TARGET,
  ) {}

  /**
   * Reads every pack: calls `onRecord` for each live record with a valid header (it returns false
   * for a record it does not keep, which is then marked dead), cuts torn tails and drops packs
   * left with no live record.
   */
  async scan(onRecord: (header: ChunkHeader, record: PackedRecord) => boolean): Promise<PackScanReport> {
    const report: PackScanReport = { damaged: [], removedDeadLists: 0 };
    const names = await readdir(this.dir);
    const packs = new Set<string>();
    const deadLists: string[] = [];
    for (const name of names) {
      const m = PACK_RE.exec(name);
      // Sequence numbers stay far below 2^53; a bigger one is no pack of ours and is left alone.
      if (m === null || parseInt(m[1]!, 16) > MAX_SEQ) continue;
      if (m[2] === 'pack') packs.add(m[1]!);
      else deadLists.push(name);
    }
    for (const name of deadLists) {
      if (packs.has(name.slice(0, 16))) continue;
      await rm(join(this.dir, name), { force: true });
      report.removedDeadLists++;
    }
    const unkept: { record: PackedRecord; id: string; size: number }[] = [];
    for (const hex of [...packs].sort()) {
      const seq = parseInt(hex, 16);
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      const pack = this.newPack(seq);
      pack.sealed = true; // appends always go to a pack made after the open
      this.packs.set(seq, pack);
      const dead = await this.readDeadList(pack);
      await this.scanPack(pack, dead, report, (header, record) => {
        pack.live++;
        pack.liveBytes += CHUNK_HEADER_SIZE + header.size;
        if (!onRecord(header, record)) unkept.push({ record, id: header.id, size: header.size });
      });
    }
    for (const { record, id, size } of unkept) await this.markDead(record, id, size);
    for (const pack of [...this.packs.values()]) if (pack.live === 0) await this.removePack(pack);
    return report;
  }

  private newPack(seq: number): Pack {
    const path = join(this.dir, `${seq.toString(16).padStart(16, '0')}.pack`);
    return { seq, path, size: 0, live: 0, liveBytes: 0, sealed: false, gone: false, handle: null, stale: [], readers: 0 };
  }

  private deadPath(pack: Pack): string {
    return pack.path.slice(0, -'.pack'.length) + '.deleted';
  }

  private legacyDeadPath(pack: Pack): string {
    return pack.path.slice(0, -'.pack'.length) + '.dead';
  }

  /**
   * Offsets of dead records, each with the first 16 hex digits of the chunk id its entry names, or
   * null for an entry of a first-version list, which names none and applies to whatever is there.
   */
  private async readDeadList(pack: Pack): Promise<Map<number, string | null>> {
    const dead = new Map<number, string | null>();
    const legacy = await readIfExists(this.legacyDeadPath(pack));
    // A torn last entry is ignored: the list is never appended to again.
    for (let at = 0; legacy !== null && at + LEGACY_DEAD_ENTRY <= legacy.length; at += LEGACY_DEAD_ENTRY) {
      dead.set(Number(legacy.readBigUInt64BE(at)), null);
    }
    const bytes = await readIfExists(this.deadPath(pack));
    if (bytes === null) return dead;
    for (let at = 0; at + DEAD_ENTRY <= bytes.length; at += DEAD_ENTRY) {
      dead.set(Number(bytes.readBigUInt64BE(at)), bytes.toString('hex', at + 8, at + DEAD_ENTRY));
    }
    // A torn last entry (a crash in the middle of an append) is cut off, so the next append starts
    // on an entry boundary; that deletion is simply redone when the master asks again.
    if (bytes.length % DEAD_ENTRY !== 0) await truncate(this.deadPath(pack), bytes.length - (bytes.length % DEAD_ENTRY));
    return dead;
  }

  private async scanPack(pack: Pack, dead: Map<number, string | null>, report: PackScanReport, onRecord: (h: ChunkHeader, r: PackedRecord) => void): Promise<void> {
    const fh = await open(pack.path, 'r');
    const name = `packs/${pack.path.slice(pack.path.lastIndexOf('/') + 1)}`;
    try {
      const fileSize = (await fh.stat()).size;
      const window = new Window(fh, fileSize);
      let pos = 0;
      while (pos < fileSize) {
        const header = await window.header(pos);
        const end = 'invalid' in header ? -1 : pos + CHUNK_HEADER_SIZE + header.size;
        if (!('invalid' in header) && end <= fileSize) {
          const entry = dead.get(pos);
          if (entry === undefined || (entry !== null && entry !== header.id.slice(0, 16))) onRecord(header, { pack, offset: pos });
          pos = end;
          continue;
        }
        // No record starts here: find the next whole one, if any.
        const reason = 'invalid' in header ? header.invalid : `record of ${header.size} bytes runs past the end of the file`;
        const next = await window.nextHeader(pos + 1);
        if (next !== null) {
          // Kept for inspection: the pack itself goes once its records are dead.
          const kept = quarantinePath(this.quarantineDir, `${name.slice(6)}.${pos}`);
          const bytes = Buffer.allocUnsafe(next - pos);
          await fh.read(bytes, 0, bytes.length, pos);
          await writeFile(kept, bytes);
          report.damaged.push({ name: `${name} bytes ${pos}-${next}`, reason: `${reason}; kept as quarantine/${kept.slice(kept.lastIndexOf('/') + 1)}` });
          pos = next;
          continue;
        }
        // Nothing valid up to the end: a torn tail. It was never acknowledged (or it is damage,
        // which indexed nothing either): keep the bytes for inspection and cut them off.
        const kept = quarantinePath(this.quarantineDir, `${name.slice(6)}.${pos}`);
        const tail = Buffer.allocUnsafe(fileSize - pos);
        await fh.read(tail, 0, tail.length, pos);
        await writeFile(kept, tail);
        await truncate(pack.path, pos);
        report.damaged.push({ name: `${name} bytes ${pos}-${fileSize}`, reason: `${reason}; cut off, kept as quarantine/${kept.slice(kept.lastIndexOf('/') + 1)}` });
        break;
      }
      pack.size = Math.min(pos, fileSize);
    } finally {
      await fh.close();
    }
  }

  /**
   * Appends a record (a chunk header and its data). Resolves once it is durable, with where it
   * lives; appends of the same moment share one write and one fdatasync. The buffer is given away.
   */
  append(record: Buffer): Promise<PackedRecord> {
    return new Promise<PackedRecord>((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      // Every append of this tick joins the batch.
      this.flushing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.flush());
    });
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        let bytes = 0;
        let n = 0;
        while (n < this.queue.length && n < BATCH_RECORDS && (n === 0 || bytes + this.queue[n]!.record.length <= BATCH_BYTES)) {
          bytes += this.queue[n]!.record.length;
          n++;
        }
        const batch = this.queue.splice(0, n);
        try {
          await this.writeBatch(batch, bytes);
        } catch (err) {
          // writeBatch settles its batch on the failures it expects; nothing may be left hanging.
          for (const a of batch) a.reject(err);
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  private async writeBatch(batch: Append[], bytes: number): Promise<void> {
    let pack = this.active;
    const create = pack === null || pack.sealed || pack.size >= this.target;
    if (create) {
      if (pack !== null) await this.seal(pack);
      pack = this.newPack(this.nextSeq++);
      this.packs.set(pack.seq, pack);
      this.active = pack;
    }
    const position = pack!.size;
    const data = Buffer.allocUnsafeSlow(bytes);
    const records: PackedRecord[] = [];
    let at = 0;
    for (const a of batch) {
      records.push({ pack: pack!, offset: position + at });
      data.set(a.record, at);
      at += a.record.length;
    }
    pack!.size += bytes;
    try {
      await this.pool.writeAt(pack!.path, data, { position, create, fsync: this.fsync, ...(create && this.fsync ? { syncDir: this.dir } : {}) });
    } catch (err) {
      // What the file holds past `position` is unknown: no more appends to it. A record that did
      // land whole is found by the next open and reported; the master knows nothing of it.
      pack!.sealed = true;
      for (const a of batch) a.reject(err);
      if (create) {
        pack!.gone = true;
        this.packs.delete(pack!.seq);
        if (this.active === pack) this.active = null;
        // A file that was in the way is not ours: left alone. One this write made holds only the
        // batch just refused, never acknowledged: removed, or the next open would list its records.
        if (errnoOf(err) !== 'EEXIST') await rm(pack!.path, { force: true }).catch(() => undefined);
      } else if (pack!.live === 0) {
        await this.removePack(pack!).catch(() => undefined);
      }
      return;
    }
    pack!.live += batch.length;
    pack!.liveBytes += bytes;
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(records[i]!);
  }

  /** No more appends to `pack`; deleted if nothing in it is live. A failed removal is left for the next open. */
  private async seal(pack: Pack): Promise<void> {
    pack.sealed = true;
    if (pack.live === 0) await this.removePack(pack).catch(() => undefined);
  }

  /** The record's data (`size` bytes after its header). The caller checks it against its hash. */
  async readData(record: PackedRecord, size: number): Promise<Buffer> {
    const { pack } = record;
    if (pack.gone) throw new DfsError('NOT_FOUND', `pack ${pack.path} was deleted`);
    pack.readers++;
    const handle = (pack.handle ??= open(pack.path, 'r'));
    try {
      const fh = await handle;
      const buf = Buffer.allocUnsafe(size);
      let done = 0;
      while (done < size) {
        const { bytesRead } = await fh.read(buf, done, size - done, record.offset + CHUNK_HEADER_SIZE + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done !== size) throw new DfsError('CHECKSUM_MISMATCH', `pack ${pack.path} ends after ${done} of ${size} data bytes`);
      return buf;
    } catch (err) {
      // An errno error may mean a bad handle: the next read opens a fresh one. A short read does
      // not. Reads still using this one finish first; another reader may already have replaced it.
      if (!(err instanceof DfsError) && pack.handle === handle) {
        pack.handle = null;
        pack.stale.push(handle);
      }
      throw err;
    } finally {
      pack.readers--;
      if (pack.readers === 0) for (const h of pack.stale.splice(0)) void h.then((fh) => fh.close()).catch(() => undefined);
      if (pack.gone) this.closeHandle(pack);
    }
  }

  /** Copies a record (header and data) to `path`, for inspection after it was found damaged. */
  async copyOut(record: PackedRecord, size: number, path: string): Promise<void> {
    const { pack } = record;
    const fh = await open(pack.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(CHUNK_HEADER_SIZE + size);
      const { bytesRead } = await fh.read(buf, 0, buf.length, record.offset);
      await writeFile(path, buf.subarray(0, bytesRead));
    } finally {
      await fh.close();
    }
  }

  /** Records a record (of `size` data bytes) as dead; a sealed pack left with no live record is deleted. */
  async markDead(record: PackedRecord, id: string, size: number): Promise<void> {
    const { pack } = record;
    if (pack.gone) return;
    pack.live--;
    pack.liveBytes -= CHUNK_HEADER_SIZE + size;
    if (pack.sealed && pack.live === 0) {
      await this.removePack(pack);
      return;
    }
    const entry = Buffer.allocUnsafe(DEAD_ENTRY);
    entry.writeBigUInt64BE(BigInt(record.offset));
    entry.write(id.slice(0, 16), 8, 8, 'hex');
    await appendFile(this.deadPath(pack), entry);
  }

  private async removePack(pack: Pack): Promise<void> {
    if (pack.gone) return;
    pack.gone = true;
    this.packs.delete(pack.seq);
    if (this.active === pack) this.active = null;
    // The pack first: a dead list left alone by a crash is removed at the next open.
    await rm(pack.path, { force: true });
    await rm(this.deadPath(pack), { force: true });
    await rm(this.legacyDeadPath(pack), { force: true });
    this.closeHandle(pack);
  }

  private closeHandle(pack: Pack): void {
    if (pack.readers > 0 || pack.handle === null) return;
    const handle = pack.handle;
    pack.handle = null;
    void handle.then((fh) => fh.close()).catch(() => undefined);
  }

  /**
   * Seals the pack taking appends if at least `minDeadShare` of it is dead and no batch is being
   * written: a pack is freed or compacted only once sealed, and a keeper whose writes are rare
   * would otherwise keep a mostly deleted pack until it grows to the target size.
   */
  async retireActive(minDeadShare = 0.5): Promise<void> {
    const pack = this.active;
    if (pack === null || pack.sealed || pack.size === 0 || this.flushing !== null) return;
    if (1 - pack.liveBytes / pack.size < minDeadShare) return;
    this.active = null;
    await this.seal(pack);
  }

  /**
   * The sealed pack with the largest share of dead bytes, if at least `minDeadShare` of it is dead:
   * moving its live records to the newest pack frees the rest of its space.
   */
  compactionCandidate(minDeadShare = 0.5): Pack | null {
    let best: Pack | null = null;
    let bestShare = minDeadShare;
    for (const p of this.packs.values()) {
      if (!p.sealed || p.gone || p.size === 0) continue;
      const share = 1 - p.liveBytes / p.size;
      if (share >= bestShare) {
        best = p;
        bestShare = share;
      }
    }
    return best;
  }

  /** Waits for appends in progress, then closes the read handles. */
  async close(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    for (const pack of this.packs.values()) {
      pack.readers = 0;
      this.closeHandle(pack);
    }
  }
}

/** Buffered positioned reads over a pack file, for the scan at open. */
class Window {
  private buf = Buffer.alloc(0);
  private start = 0;

  constructor(private readonly fh: FileHandle, private readonly fileSize: number) {}

  private async load(pos: number, want: number): Promise<Buffer> {
    if (pos >= this.start && pos + want <= this.start + this.buf.length) {
      return this.buf.subarray(pos - this.start, pos - this.start + want);
    }
    const length = Math.min(Math.max(SCAN_WINDOW, want), this.fileSize - pos);
    const buf = Buffer.allocUnsafe(Math.max(0, length));
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, pos + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    this.buf = buf.subarray(0, done);
    this.start = pos;
    return this.buf.subarray(0, Math.min(want, done));
  }

  async header(pos: number): Promise<ChunkHeader | { invalid: string }> {
    return decodeChunkHeader(await this.load(pos, CHUNK_HEADER_SIZE));
  }

  /**
   * Whether a whole record starts at `pos`: a valid header, and data that fits in the file and has
   * the header's SHA-256. The hash keeps a chunk header that happens to sit inside another chunk's
   * data (a stored chunk file, say) from being taken for a record.
   */
  private async isWholeRecord(pos: number): Promise<boolean> {
    const h = await this.header(pos);
    if ('invalid' in h || pos + CHUNK_HEADER_SIZE + h.size > this.fileSize) return false;
    const data = await this.load(pos + CHUNK_HEADER_SIZE, h.size);
    return data.length === h.size && createHash('sha256').update(data).digest('hex') === h.sha256;
  }

  /** The position of the first whole record at or after `from`, or null. */
  async nextHeader(from: number): Promise<number | null> {
    for (let pos = from; pos + CHUNK_HEADER_SIZE <= this.fileSize;) {
      const piece = await this.load(pos, Math.min(SCAN_WINDOW, this.fileSize - pos));
      const i = piece.indexOf(MAGIC);
      if (i === -1) {
        // A magic split across two windows is still found: the next one overlaps by its length.
        pos += Math.max(1, piece.length - (MAGIC.length - 1));
        continue;
      }
      if (await this.isWholeRecord(pos + i)) return pos + i;
      pos += i + 1;
    }
    return null;
  }
}

/** A whole file, or null if it does not exist. */
function readIfExists(path: string): Promise<Buffer | null> {
  return readFile(path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(err)));
}

/** The errno name of a file system error; a worker's comes wrapped in a DfsError (workers/errors.ts). */
function errnoOf(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.cause?.code ?? e?.code;
}
