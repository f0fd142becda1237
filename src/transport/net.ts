// TCP and TLS endpoints that produce dfs wire connections.

import net from 'node:net';
import tls from 'node:tls';
import { DfsError } from '../wire/errors.js';
import { Connection, type ConnectionOptions } from './connection.js';

export interface Address {
  host: string;
  port: number;
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT); throws INVALID_ARGUMENT with what was wrong. */
export function parseAddress(text: string, what = 'address'): Address {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port < 0 || port > 65535) throw new DfsError('INVALID_ARGUMENT', `${what} '${text}' has port ${port} outside 0..65535`);
  return { host: m[1] ?? m[2]!, port };
}

export function formatAddress(a: Address): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface ListenOptions extends Omit<ConnectionOptions, 'role' | 'peerLabel'> {
  host?: string;
  port?: number;
  /** When given, connections are TLS. */
  tls?: tls.TlsOptions;
}

export interface WireServer {
  readonly address: Address;
  readonly connections: ReadonlySet<Connection>;
  /** Stops accepting, shuts every connection down gracefully, and resolves when all are closed. */
  close(): Promise<void>;
}

export async function listen(options: ListenOptions, onConnection: (conn: Connection) => void): Promise<WireServer> {
  const connections = new Set<Connection>();
  const accept = (socket: net.Socket) => {
    socket.setNoDelay(true);
    const conn = new Connection(socket, { ...options, role: 'server', peerLabel: `${socket.remoteAddress}:${socket.remotePort}` });
    connections.add(conn);
    conn.on('close', () => connections.delete(conn));
    onConnection(conn);
  };
  const server = options.tls ? tls.createServer(options.tls, accept) : net.createServer(accept);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as net.AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    connections,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...connections].map((c) => c.shutdown()));
      await closed;
    },
  };
}

export interface ConnectOptions extends Omit<ConnectionOptions, 'role' | 'peerLabel'> {
  tls?: tls.ConnectionOptions;
  signal?: AbortSignal;
  /** Time allowed for TCP connect, preface and HELLO together. */
  timeoutMs?: number;
}

/** Connects and resolves once the peer's HELLO is in, so the connection is ready for requests. */
export async function connect(address: Address, options: ConnectOptions = {}): Promise<Connection> {
  const label = formatAddress(address);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const socket = options.tls
    ? tls.connect({ ...options.tls, host: address.host, port: address.port })
    : net.connect({ host: address.host, port: address.port });
  socket.setNoDelay(true);
  const conn = new Connection(socket, { ...options, role: 'client', peerLabel: label });
  const timer = setTimeout(() => conn.destroy(new DfsError('UNAVAILABLE', `could not reach ${label} within ${timeoutMs} ms`)), timeoutMs);
  const onAbort = () => conn.destroy(new DfsError('CANCEL', `connecting to ${label} was cancelled`));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await conn.ready;
    return conn;
  } catch (err) {
    const cause = (err as DfsError).cause as NodeJS.ErrnoException | undefined;
    if (cause?.code === 'ECONNREFUSED' || cause?.code === 'EHOSTUNREACH' || cause?.code === 'ENOTFOUND') {
      throw new DfsError('UNAVAILABLE', `cannot connect to ${label}: ${cause.code}`, { cause });
    }
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}
