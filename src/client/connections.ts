// One wire connection per peer address, shared by every request to that peer and reopened when
// it closes (idle timeout, GOAWAY, a dropped socket): streams multiplex, so one is enough.

import { connect, parseAddress, type Connection } from '../transport/index.js';
import { DfsError } from '../wire/errors.js';

export interface ConnectionCacheOptions {
  /** Time allowed for TCP connect, preface and HELLO. Default 10 s. */
  connectTimeoutMs?: number;
  /** Implementation name sent in HELLO. */
  agent?: string;
}

export class ConnectionCache {
  private readonly open = new Map<string, Connection>();
  private readonly connecting = new Map<string, Promise<Connection>>();
  private closed = false;

  constructor(private readonly options: ConnectionCacheOptions = {}) {}

  /**
   * A usable connection to `address` (HOST:PORT), reusing the cached one when it can still open
   * streams. Concurrent callers share one connection attempt; a caller's signal only stops its own wait.
   */
  async get(address: string, signal?: AbortSignal): Promise<Connection> {
    if (this.closed) throw new DfsError('CANCEL', `the dfs client is closed; cannot reach ${address}`);
    if (signal?.aborted) throw cancelled(signal, `connecting to ${address} was cancelled`);
    const cached = this.open.get(address);
    if (cached !== undefined && cached.isUsable) return cached;
    let pending = this.connecting.get(address);
    if (pending === undefined) {
      pending = this.dial(address);
      this.connecting.set(address, pending);
      // A rejection nobody waits for any more must not surface as unhandled.
      pending.catch(() => {});
    }
    return abortable(pending, signal, `connecting to ${address} was cancelled`);
  }

  /** Drops the cached connection to `address` if it is `conn`, so the next request reconnects. */
  forget(address: string, conn: Connection): void {
    if (this.open.get(address) === conn) this.open.delete(address);
  }

  /** Shuts every connection down gracefully; requests still running are given the drain deadline. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = [...this.connecting.values()];
    this.connecting.clear();
    const settled = await Promise.allSettled(pending);
    const conns = new Set(this.open.values());
    for (const s of settled) if (s.status === 'fulfilled') conns.add(s.value);
    this.open.clear();
    await Promise.all([...conns].map((c) => c.shutdown('client closing').catch(() => {})));
  }

  private async dial(address: string): Promise<Connection> {
    try {
      const conn = await connect(parseAddress(address), {
        timeoutMs: this.options.connectTimeoutMs ?? 10_000,
        agent: this.options.agent ?? 'dfs-client',
      });
      if (this.closed) {
        conn.destroy();
        throw new DfsError('CANCEL', `the dfs client is closed; cannot reach ${address}`);
      }
      this.open.set(address, conn);
      conn.once('close', () => this.forget(address, conn));
      return conn;
    } catch (err) {
      if (err instanceof DfsError && err.code === 'CONNECTION_CLOSED') {
        throw new DfsError('UNAVAILABLE', `cannot connect to ${address}: ${err.message}`, { cause: err });
      }
      throw err;
    } finally {
      this.connecting.delete(address);
    }
  }
}

/** Waits for `promise` unless `signal` aborts first, in which case it rejects with CANCEL. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, why: string): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(cancelled(signal, why));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelled(signal, why));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

/** Throws CANCEL (or the signal's own DfsError reason) when `signal` is aborted. */
export function throwIfCancelled(signal: AbortSignal | undefined, why: string): void {
  if (signal?.aborted) throw cancelled(signal, why);
}

/** The DfsError for an aborted signal: its reason when that is a DfsError, else CANCEL. */
export function cancelled(signal: AbortSignal, why: string): DfsError {
  return signal.reason instanceof DfsError ? signal.reason : new DfsError('CANCEL', why, { cause: signal.reason });
}
