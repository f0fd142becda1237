// Connections from this keeper to other keepers, one per address, reused by every pipeline that
// forwards there and replaced when closed or going away.

import { connect, formatAddress, parseAddress, type Connection } from '../transport/index.js';
import type { ConnectionOptions } from '../transport/connection.js';
import { DfsError } from '../wire/errors.js';

export interface PeerPoolOptions {
  /** Time allowed for TCP connect, preface and HELLO. Default 5 s. */
  connectTimeoutMs?: number;
  /** Sent in HELLO, for the peer's logs. */
  agent?: string;
  settings?: ConnectionOptions['settings'];
}

export class PeerPool {
  private readonly conns = new Map<string, Connection>();
  private readonly connecting = new Map<string, Promise<Connection>>();
  private closed = false;

  constructor(private readonly options: PeerPoolOptions = {}) {}

  /** A ready connection to `address` (HOST:PORT): the pooled one while usable, else a new one. */
  get(address: string): Promise<Connection> {
    if (this.closed) return Promise.reject(new DfsError('UNAVAILABLE', 'keeper is shutting down'));
    const key = formatAddress(parseAddress(address, 'downstream keeper address'));
    const existing = this.conns.get(key);
    if (existing?.isUsable) return Promise.resolve(existing);
    const pending = this.connecting.get(key);
    if (pending) return pending;
    const attempt = this.open(key).finally(() => this.connecting.delete(key));
    this.connecting.set(key, attempt);
    return attempt;
  }

  private async open(key: string): Promise<Connection> {
    const conn = await connect(parseAddress(key), {
      timeoutMs: this.options.connectTimeoutMs ?? 5000,
      ...(this.options.agent === undefined ? {} : { agent: this.options.agent }),
      ...(this.options.settings === undefined ? {} : { settings: this.options.settings }),
    });
    if (this.closed) {
      conn.destroy();
      throw new DfsError('UNAVAILABLE', 'keeper is shutting down');
    }
    // A connection that is going away keeps serving its streams; only new ones go elsewhere.
    const old = this.conns.get(key);
    if (old && old !== conn && !old.isClosed) old.shutdown().catch(() => {});
    this.conns.set(key, conn);
    conn.on('close', () => {
      if (this.conns.get(key) === conn) this.conns.delete(key);
    });
    return conn;
  }

  /** Shuts every pooled connection down gracefully. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.connecting.values()]);
    await Promise.all([...this.conns.values()].map((c) => c.shutdown()));
    this.conns.clear();
  }
}
