// The keeper's heartbeat: every interval, HEARTBEAT on the master with what this keeper holds and
// can take. An unreachable master is retried with bounded backoff; the loop never throws and logs
// one line per change of state, not one per failed attempt.

import { setTimeout as sleep } from 'node:timers/promises';
import { callForBuffer, connect, formatAddress, type Address, type Connection } from '../transport/index.js';
import type { Decoded } from '../wire/fields.js';
import { HEARTBEAT } from '../protocol/ops.js';

export type HeartbeatReport = Decoded<typeof HEARTBEAT.request>;

/** First retry delay after a failed heartbeat; doubles up to BACKOFF_MAX_MS. */
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;

export interface HeartbeatOptions {
  master: Address;
  /** Time between heartbeats, unless the master's reply names another interval. */
  intervalMs: number;
  /** What to report; called before each heartbeat. */
  report: () => Promise<HeartbeatReport> | HeartbeatReport;
  log: (line: string) => void;
  /** Sent in HELLO, for the master's logs. */
  agent?: string;
  /** Time allowed for connecting and for each reply. Default max(2 s, 3 intervals). */
  timeoutMs?: number;
}

type State = 'starting' | 'connected' | 'lost';

export class HeartbeatLoop {
  private readonly controller = new AbortController();
  private conn: Connection | null = null;
  private state: State = 'starting';
  private running: Promise<void> | null = null;
  /** Heartbeats the master acknowledged. */
  acknowledged = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  get connected(): boolean {
    return this.state === 'connected';
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops the loop and closes the connection to the master gracefully. */
  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
    const conn = this.conn;
    this.conn = null;
    if (conn) {
      // A master that does not answer the GOAWAY round trip must not hold the keeper's shutdown.
      const timer = setTimeout(() => conn.destroy(), 1000);
      await conn.shutdown().catch(() => {});
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    const { master, intervalMs, log } = this.options;
    const signal = this.controller.signal;
    const label = formatAddress(master);
    const timeoutMs = this.options.timeoutMs ?? Math.max(2000, 3 * intervalMs);
    let backoff = BACKOFF_MIN_MS;
    while (!signal.aborted) {
      let wait: number;
      try {
        if (!this.conn?.isUsable) {
          this.conn?.destroy();
          this.conn = null;
          this.conn = await connect(master, { timeoutMs, signal, agent: this.options.agent ?? 'dfs-keeper' });
        }
        const report = await this.options.report();
        const { response } = await callForBuffer(this.conn, HEARTBEAT, report, { timeoutMs, signal, maxBodyBytes: 4 * 1024 * 1024 });
        this.acknowledged++;
        if (this.state !== 'connected') log(`connected to master ${label}`);
        this.state = 'connected';
        backoff = BACKOFF_MIN_MS;
        wait = response.intervalMs > 0 ? response.intervalMs : intervalMs;
      } catch (err) {
        if (signal.aborted) break;
        const why = (err as Error)?.message ?? String(err);
        if (this.state === 'connected') log(`lost master ${label}: ${why}; retrying`);
        else if (this.state === 'starting') log(`cannot reach master ${label}: ${why}; retrying`);
        this.state = 'lost';
        // A connection that failed a heartbeat is not trusted for the next one.
        this.conn?.destroy();
        this.conn = null;
        wait = backoff;
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      try {
        await sleep(wait, undefined, { signal });
      } catch {
        break;
      }
    }
  }
}
