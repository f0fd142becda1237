// The ceiling: plain node:net sockets with no protocol beyond what each scenario strictly needs.
// Bulk is a bare byte pipe (one socket per stream, since raw TCP cannot multiplex); small requests are
// fixed 68-byte frames (4-byte big-endian length + 64 bytes) that the server echoes.

import net from 'node:net';
import { once } from 'node:events';
import { HOST, closedLoop, pump, shares, type BulkOptions, type Contender, type Ports, type RpcOptions, type RpcResult } from './wire-common.js';

const LENGTH_PREFIX = 4;

async function listen(onSocket: (socket: net.Socket) => void): Promise<number> {
  const server = net.createServer({ noDelay: true }, onSocket);
  server.listen(0, HOST);
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** Counts bytes until the client half-closes, then answers with the count as 8 bytes. */
function bulkSink(socket: net.Socket): void {
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  socket.on('end', () => {
    const ack = Buffer.allocUnsafe(8);
    ack.writeBigUInt64BE(BigInt(received));
    socket.end(ack);
  });
  socket.on('error', () => socket.destroy());
}

/**
 * Calls `onFrame` for every complete length-prefixed frame the socket delivers, keeping a partial
 * frame for the next read. Writes made from `onFrame` leave in one corked batch per read.
 */
function onFrames(socket: net.Socket, onFrame: (frame: Buffer) => void, afterRead: () => void = () => {}): void {
  let pending: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    let offset = 0;
    socket.cork();
    while (buf.length - offset >= LENGTH_PREFIX) {
      const size = LENGTH_PREFIX + buf.readUInt32BE(offset);
      if (buf.length - offset < size) break;
      onFrame(buf.subarray(offset, offset + size));
      offset += size;
    }
    socket.uncork();
    afterRead();
    if (offset < buf.length) pending = buf.subarray(offset);
  });
}

/** Echoes every complete length-prefixed frame. */
function echoFrames(socket: net.Socket): void {
  onFrames(socket, (frame) => socket.write(frame));
  socket.on('error', () => socket.destroy());
}

async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect({ port, host: HOST, noDelay: true });
  await once(socket, 'connect');
  return socket;
}

async function bulk(ports: Ports, { totalBytes, streams, chunk }: BulkOptions): Promise<{ seconds: number }> {
  const parts = shares(totalBytes, streams);
  const sockets = await Promise.all(parts.map(() => connect(ports.bulk!)));
  const start = performance.now();
  await Promise.all(
    sockets.map(async (socket, i) => {
      const acked = new Promise<Buffer>((resolve, reject) => {
        const got: Buffer[] = [];
        socket.on('data', (b: Buffer) => got.push(b));
        socket.once('end', () => resolve(Buffer.concat(got)));
        socket.once('error', reject);
      });
      await pump(socket, chunk, parts[i]!);
      const ack = await acked;
      const echoed = ack.length === 8 ? Number(ack.readBigUInt64BE()) : -1;
      if (echoed !== parts[i]) throw new Error(`raw net bulk: server counted ${echoed} bytes, sent ${parts[i]}`);
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  for (const s of sockets) s.destroy();
  return { seconds };
}

async function rpc(ports: Ports, options: RpcOptions): Promise<RpcResult> {
  const socket = await connect(ports.rpc!);
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX + options.body.length);
  frame.writeUInt32BE(options.body.length, 0);
  options.body.copy(frame, LENGTH_PREFIX);
  // Responses come back in order on one socket, so completions form a FIFO.
  const waiting: ((err?: Error | null) => void)[] = [];
  let head = 0;
  // New requests issued from the completions leave in one corked write.
  onFrames(socket, () => waiting[head++]!(), () => {
    if (head > 4096) {
      waiting.splice(0, head);
      head = 0;
    }
  });
  let failure: Error | null = null;
  socket.on('error', (err) => {
    failure = err;
    for (let i = head; i < waiting.length; i++) waiting[i]!(err);
  });
  try {
    return await closedLoop(options, (done) => {
      if (failure) return done(failure);
      waiting.push(done);
      socket.write(frame);
    });
  } finally {
    socket.destroy();
  }
}

export const rawNet: Contender = {
  name: 'raw net',
  async serve() {
    return { bulk: await listen(bulkSink), rpc: await listen(echoFrames) };
  },
  bulk,
  rpc,
};
