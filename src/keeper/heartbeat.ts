// The keeper's heartbeat: every interval, HEARTBEAT on the master with what this keeper holds and
// can take, carrying the results of finished tasks and the replicas found corrupt (HEARTBEAT_BODY),
// and bringing back new tasks (TASKS_BODY). An unreachable master is retried with bounded backoff;
// the loop never throws and logs one line per change of state, not one per failed attempt.

import { call, connect, formatAddress, readAll, type Address, type Connection } from '../transport/index.js';
import { decodeRecord, encodeRecord, type Decoded } from '../wire/fields.js';
import { DfsError } from '../wire/errors.js';
import { HEARTBEAT, HEARTBEAT_BODY, TASKS_BODY } from '../protocol/ops.js';

export type HeartbeatReport = Decoded<typeof HEARTBEAT.request>;
export type HeartbeatBody = Decoded<typeof HEARTBEAT_BODY>;
export type Task = Decoded<typeof TASKS_BODY>['tasks'][number];

/** First retry delay after a failed heartbeat; doubles up to BACKOFF_MAX_MS. */
export const BACKOFF_MIN_MS = 100;
export const BACKOFF_MAX_MS = 2000;
/** Fewest ms between the starts of two heartbeats sent early (results to report). */
export const DEFAULT_MIN_GAP_MS = 100;
/** Largest TASKS_BODY taken from a heartbeat reply; a bigger one is dropped, tasks and all. */
export const MAX_TASKS_BODY = 4 * 1024 * 1024;

export interface HeartbeatReply {
  intervalMs: number;
  reportChunks: boolean;
  tasks: Task[];
}

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
  /** What the next heartbeat carries in its body; null (or empty lists) sends no body. */
  outbox?: () => HeartbeatBody | null;
  /**
   * Called once the master answered a heartbeat: with what that heartbeat carried (now delivered)
   * and the reply, its tasks decoded. Not called for a heartbeat that failed.
   */
  onReply?: (reply: HeartbeatReply, delivered: HeartbeatBody | null) => void;
  /** Fewest ms between heartbeats asked for early with wake(). Default 100. */
  minGapMs?: number;
}

type State = 'starting' | 'connected' | 'lost';

export class HeartbeatLoop {
  private readonly controller = new AbortController();
  private conn: Connection | null = null;
  private state: State = 'starting';
  private running: Promise<void> | null = null;
  /** Set by wake(): the next heartbeat goes as soon as the gap allows. */
  private wanted = false;
  /** Start of the last heartbeat sent, for the gap between early ones. */
  private lastStart = 0;
  /** Cuts the current pause short; null when not pausing or when the pause must not be shortened. */
  private shorten: ((delayMs: number) => void) | null = null;
  private badReplyLogged = false;
  /** Heartbeats the master acknowledged. */
  acknowledged = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** The connection heartbeats use, while the last heartbeat on it succeeded; null otherwise. */
  get connection(): Connection | null {
    return this.state === 'connected' && this.conn?.isUsable ? this.conn : null;
  }

  start(): void {
    this.running ??= this.run();
  }

  /**
   * Asks for a heartbeat soon (there are results to report): at once if the last one started at
   * least minGapMs ago, else when it has. Never during the back-off after a failure.
   */
  wake(): void {
    this.wanted = true;
    this.shorten?.(this.earlyDelay());
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

  private earlyDelay(): number {
    return Math.max(0, this.lastStart + (this.options.minGapMs ?? DEFAULT_MIN_GAP_MS) - Date.now());
  }

  private async run(): Promise<void> {
    const { master, intervalMs, log } = this.options;
    const signal = this.controller.signal;
    const label = formatAddress(master);
    const timeoutMs = this.options.timeoutMs ?? Math.max(2000, 3 * intervalMs);
    let backoff = BACKOFF_MIN_MS;
    while (!signal.aborted) {
      let wait: number;
      let canShorten = false;
      try {
        if (!this.conn?.isUsable) {
          this.conn?.destroy();
          this.conn = null;
          this.conn = await connect(master, { timeoutMs, signal, agent: this.options.agent ?? 'dfs-keeper' });
        }
        this.lastStart = Date.now();
        this.wanted = false;
        const { reply, delivered } = await this.beat(this.conn, timeoutMs, signal);
        this.acknowledged++;
        if (this.state !== 'connected') log(`connected to master ${label}`);
        this.state = 'connected';
        backoff = BACKOFF_MIN_MS;
        // After the state change, so that what onReply starts (a chunk report) finds the connection.
        this.options.onReply?.(reply, delivered);
        wait = reply.intervalMs > 0 ? reply.intervalMs : intervalMs;
        if (this.wanted) wait = Math.min(wait, this.earlyDelay());
        canShorten = true;
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
      if (!(await this.pause(wait, canShorten, signal))) break;
    }
  }

  /** One heartbeat: the report and the outbox out, the reply and its tasks in. */
  private async beat(conn: Connection, timeoutMs: number, signal: AbortSignal): Promise<{ reply: HeartbeatReply; delivered: HeartbeatBody | null }> {
    const report = await this.options.report();
    let carried = this.options.outbox?.() ?? null;
    if (carried !== null && carried.results.length === 0 && carried.corrupt.length === 0) carried = null;
    const { response, body } = await call(conn, HEARTBEAT, report, {
      timeoutMs, signal, ...(carried === null ? {} : { body: encodeRecord(HEARTBEAT_BODY, carried) }),
    });
    // The reply header means the master took the heartbeat and its body: the results are delivered
    // even if the tasks that follow cannot be read.
    let tasks: Task[] = [];
    try {
      const bytes = await withTimeout(readAll(body, MAX_TASKS_BODY), timeoutMs, () => body.destroy());
      if (bytes.length > 0) tasks = decodeRecord(TASKS_BODY, bytes).tasks;
    } catch (err) {
      body.destroy();
      if (signal.aborted) throw err;
      // The master will time these tasks out and hand them out again; one line is enough.
      if (!this.badReplyLogged) this.options.log(`dropped the tasks of a heartbeat reply: ${(err as Error)?.message ?? String(err)}`);
      this.badReplyLogged = true;
    }
    return { reply: { intervalMs: response.intervalMs, reportChunks: response.reportChunks === true, tasks }, delivered: carried };
  }

  /** Sleeps `ms`; wake() may cut it to the early-heartbeat gap when `canShorten`. False once stopped. */
  private pause(ms: number, canShorten: boolean, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const until = Date.now() + ms;
      let timer = setTimeout(() => done(true), ms);
      const done = (goOn: boolean) => {
        clearTimeout(timer);
        this.shorten = null;
        signal.removeEventListener('abort', onAbort);
        resolve(goOn);
      };
      const onAbort = () => done(false);
      signal.addEventListener('abort', onAbort, { once: true });
      if (canShorten) {
        this.shorten = (delayMs) => {
          if (Date.now() + delayMs >= until) return;
          clearTimeout(timer);
          timer = setTimeout(() => done(true), delayMs);
          this.shorten = null;
        };
      }
    });
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new DfsError('DEADLINE_EXCEEDED', `heartbeat reply body not read within ${ms} ms`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
