// Liveness and shutdown on real sockets: PING, idle timeout, keepalive, two-phase GOAWAY,
// TLS, and a misbehaving peer that costs only its own connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import {
  Connection, RpcServer, call, callForBuffer, connect, defineOperation, duplexPair, listen, registerEcho, ECHO,
} from '../src/transport/index.js';
import { encodeGoAway, encodeHello, encodePreface, encodeFrameHeader, FrameType } from '../src/wire/index.js';

const WAIT = defineOperation({ name: 'WAIT', op: 0x0300, version: 1, request: { ms: { tag: 1, type: 'u32' } }, response: { waited: { tag: 1, type: 'u32' } } });

function server(register: (rpc: RpcServer) => void = () => {}) {
  const rpc = registerEcho(new RpcServer());
  rpc.register(WAIT, async ({ request }) => {
    await new Promise((r) => setTimeout(r, request.ms));
    return { response: { waited: request.ms } };
  });
  register(rpc);
  return rpc;
}

test('PING measures a round trip over TCP', async () => {
  const rpc = server();
  const srv = await listen({}, (c) => rpc.serve(c));
  const conn = await connect(srv.address);
  const rtt = await conn.ping();
  assert.ok(rtt > 0 && rtt < 1000, `rtt ${rtt} ms`);
  conn.destroy();
  await srv.close();
});

test('an idle connection is closed with IDLE_TIMEOUT by the lower of both timeouts', async () => {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client', settings: { idleTimeoutMs: 60_000 } });
  const srv = new Connection(b, { role: 'server', settings: { idleTimeoutMs: 150 } });
  await client.ready;
  const keepLoopAlive = setTimeout(() => {}, 5000); // in-memory pipes hold no handle of their own
  const closed = new Promise<Error | null>((resolve) => client.once('close', resolve));
  const err = await closed;
  clearTimeout(keepLoopAlive);
  assert.equal((err as { code?: string } | null)?.code, 'IDLE_TIMEOUT');
  assert.ok(srv.isClosed);
});

test('a slow request keeps its connection alive past the idle timeout through keepalive PINGs', async () => {
  const rpc = server();
  const srv = await listen({ settings: { idleTimeoutMs: 300 } }, (c) => rpc.serve(c));
  const conn = await connect(srv.address, { settings: { idleTimeoutMs: 300 } });
  const { response } = await call(conn, WAIT, { ms: 900 });
  assert.equal(response.waited, 900);
  conn.destroy();
  await srv.close();
});

test('GOAWAY finishes streams in flight, refuses new ones, and closes', async () => {
  const rpc = server();
  const srv = await listen({}, (c) => rpc.serve(c));
  const conn = await connect(srv.address);
  const inFlight = call(conn, WAIT, { ms: 200 });
  await new Promise((r) => setTimeout(r, 50));
  const goaway = new Promise((resolve) => conn.once('goaway', resolve));
  const closing = srv.close();
  await goaway;
  assert.throws(() => conn.openStream(WAIT.op, 1, Buffer.alloc(0)), (err: { code: string; retriable: boolean }) =>
    err.code === 'REFUSED_STREAM' && err.retriable === true);
  assert.equal((await inFlight).response.waited, 200, 'the stream in flight completed');
  await closing;
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(conn.isClosed);
});

test('streams above the last id in GOAWAY fail as REFUSED_STREAM: never processed, safe to retry', async () => {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client' });
  b.on('data', () => {});
  b.write(Buffer.concat([encodePreface(), encodeHello({})]));
  await client.ready;
  const first = client.openStream(0x10, 1, Buffer.alloc(0));
  const second = client.openStream(0x10, 1, Buffer.alloc(0));
  first.on('error', () => {});
  second.on('error', () => {});
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([first.id, second.id], [1, 3]);
  // The server processed stream 1 only.
  b.write(encodeGoAway(1, 'NO_ERROR', 'restarting'));
  await assert.rejects(second.waitForReply(), (err: { code: string; retriable: boolean }) => err.code === 'REFUSED_STREAM' && err.retriable);
  assert.equal(first.destroyed, false, 'stream 1 is still being answered');
  client.destroy();
});

test('a peer breaking a limit loses only its own connection; other clients carry on', async () => {
  const rpc = server();
  const srv = await listen({ settings: { maxFrameSize: 16 * 1024 } }, (c) => rpc.serve(c));
  const good = await connect(srv.address);
  const bad = net.connect(srv.address.port, srv.address.host);
  await new Promise((r) => bad.once('connect', r));
  const badClosed = new Promise((r) => bad.once('close', r));
  bad.on('error', () => {});
  bad.resume();
  bad.write(Buffer.concat([encodePreface(), encodeHello({}), encodeFrameHeader(FrameType.DATA, 0, 1, 1 << 20)]));
  await badClosed;
  const { body } = await callForBuffer(good, ECHO, {}, { body: Buffer.from('still here') });
  assert.equal(body.toString(), 'still here');
  good.destroy();
  await srv.close();
});

test('connecting to a closed port fails with UNAVAILABLE', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  await assert.rejects(connect({ host: '127.0.0.1', port }), { code: 'UNAVAILABLE' });
});

test('the same engine runs over TLS', async () => {
  const key = readFileSync(new URL('./fixtures/tls-key.pem', import.meta.url));
  const cert = readFileSync(new URL('./fixtures/tls-cert.pem', import.meta.url));
  const rpc = server();
  const srv = await listen({ tls: { key, cert } }, (c) => rpc.serve(c));
  const conn = await connect(srv.address, { tls: { ca: cert, servername: 'localhost' } });
  const body = Buffer.alloc(3 * 1024 * 1024, 0x5a);
  const echoed = await callForBuffer(conn, ECHO, {}, { body });
  assert.ok(echoed.body.equals(body));
  conn.destroy();
  await srv.close();
});
