// CHUNK_REPORT: every chunk id this keeper holds, sent to the master in pages of at most
// CHUNK_REPORT_PAGE ids, the last page marked final, so the master can reconcile what it believes
// with what is on disk. Sent after the keeper's first heartbeat and whenever a heartbeat reply asks.
//
// One report at a time, and all its pages in order on one connection: a master that restarted in
// the middle of a report must not reconcile against its tail, so a report whose connection changed
// or failed starts again from the first page. A request that comes while a report is being sent or
// retried is absorbed by it: that report, once complete, answers it.

import { setTimeout as sleep } from 'node:timers/promises';
import { callForBuffer, type Connection } from '../transport/index.js';
import { encodeRecord } from '../wire/fields.js';
import { DfsError } from '../wire/errors.js';
import { CHUNK_IDS_BODY, CHUNK_REPORT, CHUNK_REPORT_PAGE } from '../protocol/ops.js';

/** First retry delay after a failed report; doubles up to REPORT_BACKOFF_MAX_MS. */
export const REPORT_BACKOFF_MIN_MS = 100;
export const REPORT_BACKOFF_MAX_MS = 5000;
/** Time allowed for the master to answer one page. */
export const REPORT_PAGE_TIMEOUT_MS = 30_000;

export interface ChunkReporterOptions {
  keeperId: string;
  /** Every chunk id held now; called once per attempt. */
  ids: () => string[];
  /** The connection to the master while it is up (the heartbeat's); null while it is not. */
  connection: () => Connection | null;
  log: (line: string) => void;
  /** Ids per page. Default (and most) CHUNK_REPORT_PAGE. */
  pageSize?: number;
  /** Time allowed for each page's reply. Default 30 s. */
  pageTimeoutMs?: number;
}

export class ChunkReporter {
  private readonly controller = new AbortController();
  private running: Promise<void> | null = null;
  /** Reports the master acknowledged in full. */
  completed = 0;

  constructor(private readonly options: ChunkReporterOptions) {
    const size = options.pageSize ?? CHUNK_REPORT_PAGE;
    if (!Number.isInteger(size) || size < 1 || size > CHUNK_REPORT_PAGE) {
      throw new DfsError('INVALID_ARGUMENT', `chunk report page size must be 1..${CHUNK_REPORT_PAGE}, got ${size}`);
    }
  }

  /** True while a report is being sent or waits to be retried. */
  get busy(): boolean {
    return this.running !== null;
  }

  /** Asks for a full report; a report already under way answers it. */
  request(): void {
    if (this.running !== null || this.controller.signal.aborted) return;
    this.running = this.run().finally(() => {
      this.running = null;
    });
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    let backoff = REPORT_BACKOFF_MIN_MS;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const { ids, pages } = await this.sendOnce(signal);
        this.completed++;
        this.options.log(`reported ${ids} chunks to the master in ${pages} page${pages === 1 ? '' : 's'}` +
          (failures > 0 ? ` after ${failures} failed attempt${failures === 1 ? '' : 's'}` : ''));
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof DfsError && err.code === 'UNKNOWN_OPERATION') {
          // A master from before chunk reports: retrying cannot help until it is replaced.
          this.options.log(`the master does not take chunk reports (${err.message}); not reporting`);
          return;
        }
        if (failures === 0) this.options.log(`chunk report failed: ${(err as Error)?.message ?? String(err)}; retrying`);
        failures++;
        try {
          await sleep(backoff, undefined, { signal });
        } catch {
          return;
        }
        backoff = Math.min(backoff * 2, REPORT_BACKOFF_MAX_MS);
      }
    }
  }

  private async sendOnce(signal: AbortSignal): Promise<{ ids: number; pages: number }> {
    const conn = this.options.connection();
    if (conn === null) throw new DfsError('UNAVAILABLE', 'not connected to the master');
    const ids = this.options.ids();
    const size = this.options.pageSize ?? CHUNK_REPORT_PAGE;
    const timeoutMs = this.options.pageTimeoutMs ?? REPORT_PAGE_TIMEOUT_MS;
    // An empty store still sends one page: the final one, with no ids.
    const pages = Math.max(1, Math.ceil(ids.length / size));
    for (let p = 0; p < pages; p++) {
      if (this.options.connection() !== conn) {
        throw new DfsError('UNAVAILABLE', 'the connection to the master changed during the report; starting it again');
      }
      const page = ids.slice(p * size, (p + 1) * size);
      await callForBuffer(conn, CHUNK_REPORT, { keeperId: this.options.keeperId, final: p === pages - 1 }, {
        body: encodeRecord(CHUNK_IDS_BODY, { ids: page }), timeoutMs, signal, maxBodyBytes: 0,
      });
    }
    return { ids: ids.length, pages };
  }
}
