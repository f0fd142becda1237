// Whether this keeper should take new chunks, as its heartbeat says: free space (the file system's,
// measured with statfs, and what the configured capacity leaves) against a reserve, and the disk
// errors of the last minute. Also the free-space figure the chunk store checks before a write.

import { statfs } from 'node:fs/promises';
import type { DfsError } from '../wire/errors.js';

/** A disk error keeps the keeper from taking writes for this long: 60 s. */
export const DEFAULT_DISK_ERROR_HOLD_MS = 60_000;
/** statfs is asked again, when free space is wanted, once the last answer is this old. */
const STATFS_MAX_AGE_MS = 500;

/** The default reserve: one largest chunk or 1% of the capacity, the smaller. */
export function defaultReserve(capacity: number, maxChunkSize: number): number {
  return Math.min(maxChunkSize, Math.floor(capacity / 100));
}

export interface SpaceReport {
  capacity: number;
  acceptingWrites: boolean;
  /** The last disk error of the hold window; '' when none. */
  diskError: string;
}

export class DiskHealth {
  private free = Number.POSITIVE_INFINITY;
  private measuredAt = 0;
  private measuring: Promise<void> | null = null;
  private lastError: { message: string; at: number } | null = null;

  constructor(
    private readonly dir: string,
    private readonly options: { capacity?: number; reserve?: number; maxChunkSize: number; errorHoldMs?: number; onChange?: () => void },
  ) {}

  /** Bytes the file system can still take, as last measured; Infinity until the first measurement. */
  diskFree(): number {
    if (Date.now() - this.measuredAt > STATFS_MAX_AGE_MS) void this.measure();
    return this.free;
  }

  /** Measures free space now (statfs of the data directory). A failing statfs counts as a disk error. */
  measure(): Promise<void> {
    this.measuring ??= (async () => {
      try {
        const fs = await statfs(this.dir);
        this.free = fs.bavail * fs.bsize;
      } catch (err) {
        this.noteError({ message: `statfs ${this.dir}: ${(err as Error)?.message ?? String(err)}` });
      } finally {
        this.measuredAt = Date.now();
        this.measuring = null;
      }
    })();
    return this.measuring;
  }

  /** A disk error happened: no writes for the hold window. True if it is the first of the window. */
  noteError(err: Pick<DfsError, 'message'>): boolean {
    const fresh = this.recentError() === '';
    this.lastError = { message: err.message, at: Date.now() };
    if (fresh) this.options.onChange?.();
    return fresh;
  }

  recentError(): string {
    const hold = this.options.errorHoldMs ?? DEFAULT_DISK_ERROR_HOLD_MS;
    return this.lastError !== null && Date.now() - this.lastError.at < hold ? this.lastError.message : '';
  }

  /** What the heartbeat says about space, given the bytes stored and reserved by writes in progress. */
  async report(used: number, reserved: number): Promise<SpaceReport> {
    await this.measure();
    const diskFree = Number.isFinite(this.free) ? this.free : 0;
    let capacity = this.options.capacity ?? used + diskFree;
    capacity = Math.min(capacity, Number.MAX_SAFE_INTEGER);
    const reserve = this.options.reserve ?? defaultReserve(capacity, this.options.maxChunkSize);
    // Writes in progress are partly on disk already and so counted twice: errs towards full.
    const free = Math.min(capacity - used, diskFree) - reserved;
    const diskError = this.recentError();
    return { capacity, acceptingWrites: free > 0 && free >= reserve && diskError === '', diskError };
  }
}
