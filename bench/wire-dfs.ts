// dfs over its own transport (src/transport/), as the wire benchmark measures it: the server is an
// RpcServer with ECHO and a benchmark-only sink; bulk uploads write to WireStreams with the same
// write()/drain loop as the baselines; small requests go through the typed rpc layer, as dfs roles do.

import {
  ECHO, RpcServer, callForBuffer, connect, defineOperation, listen, registerEcho, type Connection,
} from '../src/transport/index.js';
import { decodeRecord, encodeRecord } from '../src/wire/index.js';
import { HOST, closedLoop, pump, shares, type BulkOptions, type Contender, type Ports, type RpcOptions, type RpcResult } from './wire-common.js';

/**
 * Consumes an upload and answers with the number of bytes it received. Served only by this benchmark,
 * so its code is in the experimental range (spec §11); ECHO would send every byte back.
 */
const BENCH_SINK = defineOperation({
  name: 'BENCH_SINK',
  op: 0xfe01,
  version: 1,
  request: {},
  response: { bytes: { tag: 1, type: 'u64' } },
});

async function serve(): Promise<Ports> {
  const rpc = registerEcho(new RpcServer()).register(BENCH_SINK, ({ body }) =>
    new Promise((resolve, reject) => {
      let bytes = 0;
      body.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      body.once('end', () => resolve({ response: { bytes } }));
      body.once('error', reject);
    }),
  );
  const server = await listen({ host: HOST, port: 0 }, (conn) => rpc.serve(conn));
  return { dfs: server.address.port };
}

function open(port: number): Promise<Connection> {
  return connect({ host: HOST, port });
}

async function bulk(ports: Ports, { totalBytes, streams, chunk }: BulkOptions): Promise<{ seconds: number }> {
  const conn = await open(ports.dfs!);
  const requestHeader = encodeRecord(BENCH_SINK.request, {});
  try {
    const start = performance.now();
    await Promise.all(
      shares(totalBytes, streams).map(async (share) => {
        const stream = conn.openStream(BENCH_SINK.op, BENCH_SINK.version, requestHeader);
        const replied = stream.waitForReply();
        replied.catch(() => {});
        await pump(stream, chunk, share);
        const counted = decodeRecord(BENCH_SINK.response, await replied).bytes;
        stream.resume();
        if (counted !== share) throw new Error(`dfs bulk: server counted ${counted} bytes, sent ${share}`);
      }),
    );
    return { seconds: (performance.now() - start) / 1000 };
  } finally {
    conn.destroy();
  }
}

async function rpc(ports: Ports, options: RpcOptions): Promise<RpcResult> {
  const conn = await open(ports.dfs!);
  const expected = options.body.length;
  try {
    return await closedLoop(options, (done) => {
      callForBuffer(conn, ECHO, {}, { body: options.body }).then(
        ({ body }) => done(body.length === expected ? null : new Error(`dfs ECHO returned ${body.length} bytes, sent ${expected}`)),
        done,
      );
    });
  } finally {
    conn.destroy();
  }
}

export const dfsWire: Contender = { name: 'dfs', serve, bulk, rpc };
