// The node:http2 baseline (cleartext, prior knowledge). Its flow-control windows and frame size are
// raised to the settings dfs announces (1 MiB per stream, 16 MiB per connection, 64 KiB frames) on
// both sides. node:http2 keeps those windows for the whole transfer; dfs grows a stream's window while
// its reader keeps up (wire-spec.md §7.5), which node:http2 does not do.

import http2 from 'node:http2';
import { once } from 'node:events';
import { connect as connectSocket, type AddressInfo, type Socket } from 'node:net';
import { DEFAULT_SETTINGS } from '../src/wire/index.js';
import { HOST, closedLoop, pump, shares, type BulkOptions, type Contender, type Ports, type RpcOptions, type RpcResult } from './wire-common.js';

const SETTINGS: http2.Settings = {
  initialWindowSize: DEFAULT_SETTINGS.streamWindow,
  maxFrameSize: DEFAULT_SETTINGS.maxFrameSize,
  maxConcurrentStreams: DEFAULT_SETTINGS.maxConcurrentStreams,
};
/** http2's per-session memory cap (MB) defaults to 10, below one 16 MiB connection window. */
const MAX_SESSION_MEMORY_MB = 64;

async function serve(): Promise<Ports> {
  const server = http2.createServer({ settings: SETTINGS, maxSessionMemory: MAX_SESSION_MEMORY_MB });
  // As on every socket in this benchmark: small requests must not wait for Nagle.
  server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  server.on('session', (session) => {
    session.setLocalWindowSize(DEFAULT_SETTINGS.connectionWindow);
    session.on('error', () => session.destroy());
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => stream.destroy());
    if (headers[':path'] === '/bulk') {
      let received = 0;
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(String(received));
      });
    } else {
      const parts: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => parts.push(chunk));
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(parts.length === 1 ? parts[0] : Buffer.concat(parts));
      });
    }
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  return { http2: (server.address() as AddressInfo).port };
}

async function connect(port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://${HOST}:${port}`, {
    settings: SETTINGS,
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
    createConnection: () => connectSocket({ host: HOST, port, noDelay: true }),
  });
  await once(session, 'connect');
  session.setLocalWindowSize(DEFAULT_SETTINGS.connectionWindow);
  // The server's SETTINGS (its 1 MiB stream window) must be in force before the first upload.
  if (!session.remoteSettings || session.remoteSettings.initialWindowSize !== SETTINGS.initialWindowSize) {
    await once(session, 'remoteSettings');
  }
  return session;
}

async function bulk(ports: Ports, { totalBytes, streams, chunk }: BulkOptions): Promise<{ seconds: number }> {
  const session = await connect(ports.http2!);
  try {
    const start = performance.now();
    await Promise.all(
      shares(totalBytes, streams).map(async (share) => {
        const req = session.request({ ':method': 'POST', ':path': '/bulk' });
        const answered = new Promise<string>((resolve, reject) => {
          let text = '';
          req.setEncoding('latin1');
          req.on('data', (s: string) => (text += s));
          req.once('end', () => resolve(text));
          req.once('error', reject);
        });
        await pump(req, chunk, share);
        const counted = Number(await answered);
        if (counted !== share) throw new Error(`http2 bulk: server counted ${counted} bytes, sent ${share}`);
      }),
    );
    return { seconds: (performance.now() - start) / 1000 };
  } finally {
    session.destroy();
  }
}

async function rpc(ports: Ports, options: RpcOptions): Promise<RpcResult> {
  const session = await connect(ports.http2!);
  const headers = { ':method': 'POST', ':path': '/echo', 'content-length': String(options.body.length) };
  try {
    return await closedLoop(options, (done) => {
      const req = session.request(headers);
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.once('end', () => done(bytes === options.body.length ? null : new Error(`http2 echo returned ${bytes} bytes`)));
      req.once('error', done);
      req.end(options.body);
    });
  } finally {
    session.destroy();
  }
}

export const nodeHttp2: Contender = { name: 'http2', serve, bulk, rpc };
