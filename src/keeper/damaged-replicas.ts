// Replicas found damaged, wherever that happened (a client read, the scrubber, a VERIFY task, a
// rewrite of a chunk already held), or gone from disk: each is moved to quarantine/ so it is never
// served again, logged once, and listed in the `corrupt` field of heartbeats until one carrying it is acknowledged.

import { DfsError } from '../wire/errors.js';
import type { ChunkStore } from './chunk-store.js';

/** Most ids listed in one heartbeat; the rest go in the next ones. */
export const MAX_CORRUPT_PER_HEARTBEAT = 4096;

export class DamagedReplicas {
  /** Found damaged and not yet in an acknowledged heartbeat, in the order found. */
  private readonly pending = new Set<string>();
  /** Replicas found damaged since the keeper started. */
  found = 0;

  constructor(
    private readonly store: ChunkStore,
    private readonly log: (line: string) => void,
    /** Called when there is something new to report, to send a heartbeat early. */
    private readonly onFound: () => void = () => {},
  ) {}

  /**
   * Takes a damaged replica out of service. `where` says who found it (read, scrub, verify, write).
   * A replica already taken out (found twice at once, or deleted meanwhile) is neither logged nor
   * listed again. Never throws.
   */
  async quarantine(id: string, where: string, err: unknown): Promise<void> {
    const why = err instanceof Error ? err.message : String(err);
    let taken: boolean;
    try {
      taken = await this.store.quarantine(id);
    } catch (moveErr) {
      // Reads verify every time, so the replica is still never served; the master must still hear of it.
      this.log(`chunk ${id} failed verification (${where}) and could not be moved to quarantine: ` +
        `${(moveErr as Error)?.message ?? String(moveErr)}; ${why}`);
      this.add(id);
      return;
    }
    if (!taken) return;
    this.log(`chunk ${id} failed verification (${where}) and was quarantined: ${why}`);
    this.add(id);
  }

  /** Quarantines the replica if `err` says it is damaged; true if it did. */
  async check(id: string, where: string, err: unknown): Promise<boolean> {
    if (!(err instanceof DfsError) || err.code !== 'CHECKSUM_MISMATCH') return false;
    await this.quarantine(id, where, err);
    return true;
  }

  /** A listed replica whose file vanished: nothing to quarantine, but the master must stop counting it. */
  lost(id: string, why: string): void {
    this.log(`chunk ${id} vanished from disk and is reported as corrupt: ${why}`);
    this.add(id);
  }

  /** Ids for the next heartbeat's `corrupt`. */
  outstanding(max = MAX_CORRUPT_PER_HEARTBEAT): string[] {
    const out: string[] = [];
    for (const id of this.pending) {
      if (out.length >= max) break;
      out.push(id);
    }
    return out;
  }

  /** The master acknowledged a heartbeat listing these ids. */
  acknowledged(ids: readonly string[]): void {
    for (const id of ids) this.pending.delete(id);
    if (this.pending.size > 0) this.onFound();
  }

  private add(id: string): void {
    this.found++;
    this.pending.add(id);
    this.onFound();
  }
}
