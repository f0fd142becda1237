// The master's journal: every metadata change is appended and fsynced before it is acknowledged.
// Group commit: entries appended in the same tick share one write and one fsync.
// Each line is `<first 16 hex of sha256(json)> <json>\n`: a torn last line is detected and dropped,
// a damaged line in the middle stops the start with its byte offset, never a silent partial state.
// The journal is a sequence of segment files; `rotate` moves appends to a new one between two
// batches, so every segment holds a prefix-closed run of entries (see metadata-store.ts).

import { createHash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { parseEntry, type Entry } from './entries.js';

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export interface SegmentReplay {
  /** Intact entries handed to `onEntry`. */
  entries: number;
  /** Bytes of a torn tail that were dropped. */
  droppedBytes: number;
  /** Bytes of intact records: where appending may resume. */
  validBytes: number;
}

/**
 * Reads a journal segment and hands every intact entry to `onEntry`, in order. A torn last record
 * is reported in `droppedBytes` (whether that is allowed is the caller's call: only the newest
 * segment can have one); a damaged record before it throws IO_ERROR naming the file and offset.
 * A missing file reads as empty.
 */
export async function readSegment(file: string, onEntry: (entry: Entry) => void): Promise<SegmentReplay> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: 0, droppedBytes: 0, validBytes: 0 };
    throw err;
  }
  let entries = 0;
  let at = 0;
  while (at < data.length) {
    const nl = data.indexOf(0x0a, at);
    const line = data.toString('utf8', at, nl < 0 ? data.length : nl);
    const good = nl >= 0 && line.length > 17 && line[16] === ' ' && checksum(line.slice(17)) === line.slice(0, 16);
    if (!good) {
      // Only the last record may be torn: a crash mid-append. Anything after it means real damage.
      if (nl < 0 || nl === data.length - 1) return { entries, droppedBytes: data.length - at, validBytes: at };
      throw new DfsError('IO_ERROR', `journal ${file} is damaged at byte ${at}: record fails its checksum and is not the last one`);
    }
    let entry: Entry;
    try {
      entry = parseEntry(JSON.parse(line.slice(17)));
    } catch (err) {
      throw new DfsError('IO_ERROR', `journal ${file} has an unreadable record at byte ${at}: ${(err as Error).message}`);
    }
    try {
      onEntry(entry);
    } catch (err) {
      throw new DfsError('IO_ERROR', `journal ${file}: the record at byte ${at} does not apply: ${(err as Error).message}`, { cause: err });
    }
    entries++;
    at = nl + 1;
  }
  return { entries, droppedBytes: 0, validBytes: at };
}

export class Journal {
  private queue: { line: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  private rotation: { file: string; resolve: () => void; reject: (e: Error) => void } | null = null;
  private writing = false;
  private failed: Error | null = null;
  private count: number;

  private constructor(private file: FileHandle, private size: number, entries: number) {
    this.count = entries;
  }

  /**
   * Opens segment `path` for appending after `validBytes` (its `entries` intact records), cutting
   * off a torn tail first. A new file is made durable as a directory entry too.
   */
  static async open(path: string, validBytes: number, entries = 0): Promise<Journal> {
    const file = await open(path, 'a+');
    if (validBytes === 0) await fsyncDir(dirname(path));
    const { size } = await file.stat();
    if (size > validBytes) {
      await file.truncate(validBytes);
      await file.sync();
    }
    return new Journal(file, validBytes, entries);
  }

  /** Bytes written to the current segment. */
  get bytes(): number {
    return this.size;
  }

  /** Entries appended to the current segment, durable or still queued. */
  get entries(): number {
    return this.count;
  }

  /** Whether a write failed: then nothing more is accepted, and memory may hold entries the disk lacks. */
  get broken(): boolean {
    return this.failed !== null;
  }

  /** Resolves once the entry is on disk. */
  append(entry: Entry): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    const json = JSON.stringify(entry);
    this.count++;
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line: `${checksum(json)} ${json}\n`, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  /**
   * Makes `path` (a new file) the segment that later batches go to. Entries queued before the call
   * may land in either segment, but in order: the old segment is always a prefix of the history.
   * Resolves once the new segment exists durably and the old one is closed with all its writes synced.
   */
  rotate(path: string): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.rotation) return Promise.reject(new DfsError('INTERNAL_ERROR', 'journal: a rotation is already under way'));
    return new Promise<void>((resolve, reject) => {
      this.rotation = { file: path, resolve, reject };
      if (!this.writing) void this.flush();
    });
  }

  private fail(err: unknown, what: string): Error {
    // After a failed fsync nothing later may be acknowledged: the file's state is unknown.
    this.failed = new DfsError('IO_ERROR', `journal ${what} failed: ${(err as Error).message}`, { cause: err });
    for (const b of this.queue.splice(0)) b.reject(this.failed);
    return this.failed;
  }

  private async flush(): Promise<void> {
    this.writing = true;
    // Let every append of this tick join the batch.
    await new Promise((r) => setImmediate(r));
    while (!this.failed && (this.queue.length > 0 || this.rotation)) {
      const rotation = this.rotation;
      if (rotation) {
        this.rotation = null;
        try {
          const next = await open(rotation.file, 'wx');
          await fsyncDir(dirname(rotation.file));
          await this.file.close();
          this.file = next;
          this.size = 0;
          this.count = this.queue.length;
          rotation.resolve();
        } catch (err) {
          rotation.reject(this.fail(err, `rotation to ${rotation.file}`));
        }
        continue;
      }
      const batch = this.queue.splice(0);
      const buf = Buffer.from(batch.map((b) => b.line).join(''), 'utf8');
      try {
        await this.file.write(buf, 0, buf.length, null);
        await this.file.datasync();
        this.size += buf.length;
        for (const b of batch) b.resolve();
      } catch (err) {
        const failed = this.fail(err, 'write');
        for (const b of batch) b.reject(failed);
      }
    }
    this.writing = false;
  }

  /** Waits for queued writes and any rotation, then closes the file. */
  async drain(): Promise<void> {
    while (this.writing || this.queue.length > 0 || this.rotation) await new Promise((r) => setTimeout(r, 2));
  }

  async close(): Promise<void> {
    await this.drain();
    await this.file.close();
  }
}
