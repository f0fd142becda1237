// The master's journal: every metadata change is appended and fsynced before it is acknowledged.
// Group commit: entries appended in the same tick share one write and one fsync.
// Each line is `<first 16 hex of sha256(json)> <json>\n`: a torn last line is detected and dropped,
// a damaged line in the middle stops the start with its byte offset, never a silent partial state.

import { createHash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError } from '../wire/errors.js';
import { fsyncDir } from '../util/fsync-dir.js';
import { parseEntry, type Entry } from './entries.js';

const FILE = 'journal.log';

function checksum(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export interface Replay {
  entries: Entry[];
  /** Bytes of a torn tail that were dropped. */
  droppedBytes: number;
}

/** Reads every intact entry; throws IO_ERROR naming the offset of a damaged record before the tail. */
export async function readJournal(dir: string): Promise<Replay & { validBytes: number }> {
  let data: Buffer;
  try {
    data = await readFile(join(dir, FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], droppedBytes: 0, validBytes: 0 };
    throw err;
  }
  const entries: Entry[] = [];
  let at = 0;
  while (at < data.length) {
    const nl = data.indexOf(0x0a, at);
    const line = data.toString('utf8', at, nl < 0 ? data.length : nl);
    const good = nl >= 0 && line.length > 17 && line[16] === ' ' && checksum(line.slice(17)) === line.slice(0, 16);
    if (!good) {
      // Only the last record may be torn: a crash mid-append. Anything after it means real damage.
      if (nl < 0 || nl === data.length - 1) return { entries, droppedBytes: data.length - at, validBytes: at };
      throw new DfsError('IO_ERROR', `journal ${join(dir, FILE)} is damaged at byte ${at}: record fails its checksum and is not the last one`);
    }
    try {
      entries.push(parseEntry(JSON.parse(line.slice(17))));
    } catch (err) {
      throw new DfsError('IO_ERROR', `journal ${join(dir, FILE)} has an unreadable record at byte ${at}: ${(err as Error).message}`);
    }
    at = nl + 1;
  }
  return { entries, droppedBytes: 0, validBytes: at };
}

export class Journal {
  private queue: { line: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  private writing = false;
  private failed: Error | null = null;

  private constructor(private readonly file: FileHandle, private size: number) {}

  /** Opens for appending after `validBytes`, cutting off a torn tail first. */
  static async open(dir: string, validBytes: number): Promise<Journal> {
    const file = await open(join(dir, FILE), 'a+');
    // A journal file just created must survive a crash as a directory entry too.
    if (validBytes === 0) await fsyncDir(dir);
    const { size } = await file.stat();
    if (size > validBytes) {
      await file.truncate(validBytes);
      await file.sync();
    }
    return new Journal(file, validBytes);
  }

  get bytes(): number {
    return this.size;
  }

  /** Resolves once the entry is on disk. */
  append(entry: Entry): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    const json = JSON.stringify(entry);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line: `${checksum(json)} ${json}\n`, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.writing = true;
    // Let every append of this tick join the batch.
    await new Promise((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      const buf = Buffer.from(batch.map((b) => b.line).join(''), 'utf8');
      try {
        await this.file.write(buf, 0, buf.length, null);
        await this.file.datasync();
        this.size += buf.length;
        for (const b of batch) b.resolve();
      } catch (err) {
        // After a failed fsync nothing later may be acknowledged: the file's state is unknown.
        this.failed = new DfsError('IO_ERROR', `journal write failed: ${(err as Error).message}`, { cause: err });
        for (const b of [...batch, ...this.queue.splice(0)]) b.reject(this.failed);
      }
    }
    this.writing = false;
  }

  async close(): Promise<void> {
    while (this.writing || this.queue.length > 0) await new Promise((r) => setTimeout(r, 5));
    await this.file.close();
  }
}
