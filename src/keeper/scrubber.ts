// The scrubber: re-reads and re-hashes every stored chunk in the worker threads, forever, at a
// bounded rate, so that damage on disk (bit rot, a bad sector, a file changed behind the keeper's
// back) is found and repaired before the other replicas are needed. It stays out of the way of
// clients: a piece at a time, paced by a token bucket, pausing while client requests are in flight.

import { setTimeout as sleep } from 'node:timers/promises';
import { DfsError } from '../wire/errors.js';
import { TokenBucket } from '../util/token-bucket.js';
import type { ChunkStore } from './chunk-store.js';
import type { DamagedReplicas } from './damaged-replicas.js';

/** With no rate given, one pass over the stored bytes takes at most this long: 6 days, inside a week. */
export const SCRUB_PASS_MS = 6 * 24 * 3600 * 1000;
/** ...and the rate is never below this: 1 MiB/s. */
export const MIN_AUTO_SCRUB_RATE = 1024 * 1024;
/** A pass starts no sooner than this after the previous one started: 1 minute. */
export const DEFAULT_SCRUB_CYCLE_MIN_MS = 60_000;
/** Bytes read per step. */
const SCRUB_PIECE = 1024 * 1024;
/** While clients are being served the scrubber waits, but at most this long per step, so it always progresses. */
const MAX_YIELD_MS = 250;

/** The default scrub rate for `storedBytes`: max(stored / 6 days, 1 MiB/s). */
export function autoScrubRate(storedBytes: number): number {
  return Math.max(MIN_AUTO_SCRUB_RATE, Math.ceil(storedBytes / (SCRUB_PASS_MS / 1000)));
}

export interface ScrubberOptions {
  store: ChunkStore;
  damaged: DamagedReplicas;
  /** Bytes per second; undefined: autoScrubRate of what is stored, worked out at each pass. */
  rate?: number;
  /** True while client requests are in flight. */
  busy?: () => boolean;
  /** Least time from the start of a pass to the start of the next. Default 1 minute. */
  cycleMinMs?: number;
  log?: (line: string) => void;
}

export class Scrubber {
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;
  private readonly bucket: TokenBucket;
  /** Passes completed. */
  passes = 0;
  /** Chunks checked, bytes read and replicas found damaged since start. */
  checked = 0;
  bytes = 0;
  damagedFound = 0;

  constructor(private readonly options: ScrubberOptions) {
    const rate = options.rate ?? autoScrubRate(options.store.used());
    if (!(rate > 0)) throw new DfsError('INVALID_ARGUMENT', `scrub rate must be > 0 bytes per second, got ${rate}`);
    this.bucket = new TokenBucket(rate, Math.max(SCRUB_PIECE, rate / 10));
  }

  start(): void {
    this.running ??= this.run().catch((err: unknown) => {
      if (!this.controller.signal.aborted) this.options.log?.(`scrubber stopped: ${(err as Error)?.message ?? String(err)}`);
    });
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const { store } = this.options;
    const signal = this.controller.signal;
    const cycleMinMs = this.options.cycleMinMs ?? DEFAULT_SCRUB_CYCLE_MIN_MS;
    while (!signal.aborted) {
      const started = Date.now();
      if (this.options.rate === undefined) this.bucket.setRate(autoScrubRate(store.used()));
      let errors = 0;
      for (const { id } of store.list()) {
        if (signal.aborted) return;
        if (!store.has(id)) continue; // deleted since the pass began
        try {
          await this.yieldToClients(signal);
          await store.verify(id, {
            pieceSize: SCRUB_PIECE,
            pace: async (n) => {
              this.bytes += n;
              await this.bucket.take(n, signal);
              await this.yieldToClients(signal);
            },
          });
          this.checked++;
        } catch (err) {
          if (signal.aborted) return;
          if (await this.options.damaged.check(id, 'scrub', err)) {
            this.checked++;
            this.damagedFound++;
          } else if (!(err instanceof DfsError && err.code === 'NOT_FOUND')) {
            // A disk error is recorded by the store for the heartbeat; one line per pass is enough here.
            if (errors++ === 0) this.options.log?.(`scrub could not check chunk ${id}: ${(err as Error)?.message ?? String(err)}`);
          }
        }
      }
      this.passes++;
      try {
        await sleep(Math.max(0, started + cycleMinMs - Date.now()), undefined, { signal });
      } catch {
        return;
      }
    }
  }

  private async yieldToClients(signal: AbortSignal): Promise<void> {
    const busy = this.options.busy;
    if (!busy) return;
    for (let waited = 0; busy() && waited < MAX_YIELD_MS; waited += 10) await sleep(10, undefined, { signal });
  }
}
