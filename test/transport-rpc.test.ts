// Typed requests and responses: headers round-trip through their schemas, failures arrive as
// DfsError with the spec's code, and deadlines and cancellation reach the server.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import {
  Connection, RpcServer, call, callForBuffer, defineOperation, duplexPair, readAll, registerEcho, ECHO,
} from '../src/transport/index.js';
import { DfsError } from '../src/wire/index.js';

const STAT = defineOperation({
  name: 'STAT', op: 0x0200, version: 2,
  request: { path: { tag: 1, type: 'string' } },
  response: { size: { tag: 1, type: 'u64' }, names: { tag: 2, type: { list: 'string' } }, note: { tag: 3, type: 'string', optional: true } },
});
const SLOW = defineOperation({ name: 'SLOW', op: 0x0201, version: 1, request: {}, response: {} });

function setup(register: (server: RpcServer) => void) {
  const [a, b] = duplexPair();
  const client = new Connection(a, { role: 'client' });
  const server = new Connection(b, { role: 'server' });
  const rpc = new RpcServer();
  register(rpc);
  rpc.serve(server);
  return { client, server, close: () => { client.destroy(); server.destroy(); } };
}

test('a typed request and response round-trip through their schemas', async () => {
  const { client, close } = setup((rpc) => rpc.register(STAT, ({ request }) => ({
    response: { size: request.path.length * 1_000_000_000, names: request.path.split('/') },
  })));
  const { response } = await callForBuffer(client, STAT, { path: '/a/bb/ccc' });
  assert.equal(response.size, 9_000_000_000);
  assert.deepEqual(response.names, ['', 'a', 'bb', 'ccc']);
  assert.equal(response.note, undefined);
  close();
});

test('a handler error reaches the caller as a DfsError with the same code and message', async () => {
  const { client, close } = setup((rpc) => rpc.register(STAT, ({ request }) => {
    throw new DfsError('NOT_FOUND', `${request.path}: no such file`);
  }));
  await assert.rejects(call(client, STAT, { path: '/missing' }), (err: DfsError) => {
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.message, '/missing: no such file');
    assert.equal(err.retriable, false);
    return true;
  });
  close();
});

test('an unexpected handler exception becomes INTERNAL_ERROR, and the connection keeps serving', async () => {
  let n = 0;
  const { client, close } = setup((rpc) => rpc.register(STAT, () => {
    if (n++ === 0) throw new TypeError('boom');
    return { response: { size: 1, names: [] } };
  }));
  await assert.rejects(call(client, STAT, { path: '/' }), { code: 'INTERNAL_ERROR' });
  const ok = await callForBuffer(client, STAT, { path: '/' });
  assert.equal(ok.response.size, 1);
  close();
});

test('unknown operations and unsupported versions are refused with their own codes', async () => {
  const { client, close } = setup((rpc) => rpc.register(STAT, () => ({ response: { size: 0, names: [] } })));
  await assert.rejects(call(client, SLOW, {}), { code: 'UNKNOWN_OPERATION' });
  await assert.rejects(call(client, { ...STAT, version: 1 }, { path: '/' }), { code: 'UNSUPPORTED_OP_VERSION' });
  close();
});

test('a string field that is not valid UTF-8 is refused with PROTOCOL_ERROR, never repaired into another name', async () => {
  let handled = 0;
  const { client, close } = setup((rpc) => rpc.register(STAT, () => { handled++; return { response: { size: 0, names: [] } }; }));
  // The same operation, its path sent as raw bytes: 0xc3 and 0xe9 alone would both decode to U+FFFD.
  const RAW = defineOperation({ name: 'STAT', op: STAT.op, version: STAT.version, request: { path: { tag: 1, type: 'bytes' } }, response: {} });
  for (const bad of [[0x2f, 0xc3], [0x2f, 0xe9], [0x2f, 0xed, 0xa0, 0x80]]) {
    await assert.rejects(call(client, RAW, { path: Buffer.from(bad) }), (e: DfsError) => e.code === 'PROTOCOL_ERROR' && /not valid UTF-8/.test(e.message));
  }
  assert.equal(handled, 0);
  const { response } = await callForBuffer(client, STAT, { path: '/caf\u00e9/\u{1f600}' });
  assert.equal(response.size, 0, 'valid UTF-8, multi-byte included, is served on the same connection');
  close();
});

test('a deadline fails the call with DEADLINE_EXCEEDED and cancels the work on the server', async () => {
  let serverSignal: AbortSignal | null = null;
  const { client, close } = setup((rpc) => rpc.register(SLOW, ({ signal }) => {
    serverSignal = signal;
    return new Promise(() => {});
  }));
  await assert.rejects(call(client, SLOW, {}, { timeoutMs: 50 }), { code: 'DEADLINE_EXCEEDED' });
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(serverSignal, 'handler ran');
  assert.equal((serverSignal as unknown as AbortSignal).aborted, true, 'the server saw the cancellation');
  close();
});

test('an AbortSignal cancels a call in flight with CANCEL', async () => {
  const { client, close } = setup((rpc) => rpc.register(SLOW, () => new Promise(() => {})));
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 20);
  await assert.rejects(call(client, SLOW, {}, { signal: controller.signal }), { code: 'CANCEL' });
  const aborted = new AbortController();
  aborted.abort();
  await assert.rejects(call(client, SLOW, {}, { signal: aborted.signal }));
  close();
});

test('request and response bodies stream from Readable and async iterables', async () => {
  const { client, close } = setup((rpc) => registerEcho(rpc));
  async function* pieces() {
    for (let i = 0; i < 100; i++) yield Buffer.alloc(10_000, i);
  }
  const fromIterable = await callForBuffer(client, ECHO, {}, { body: pieces() });
  assert.equal(fromIterable.body.length, 1_000_000);
  assert.equal(fromIterable.body[999_999], 99);
  const fromReadable = await call(client, ECHO, {}, { body: Readable.from([Buffer.from('ab'), Buffer.from('cd')]) });
  assert.equal((await readAll(fromReadable.body, 100)).toString(), 'abcd');
  close();
});

test('readAll refuses a body larger than its limit instead of buffering it', async () => {
  const { client, close } = setup((rpc) => registerEcho(rpc));
  await assert.rejects(callForBuffer(client, ECHO, {}, { body: Buffer.alloc(5000), maxBodyBytes: 4096 }), { code: 'INVALID_ARGUMENT' });
  close();
});

test('a request body that fails mid-way cancels the stream instead of looking complete', async () => {
  let sawError: unknown = null;
  const { client, close } = setup((rpc) => rpc.register(SLOW, async ({ body }) => {
    try { await readAll(body, 1 << 20); } catch (err) { sawError = err; throw err; }
    return { response: {} };
  }));
  async function* failing() {
    yield Buffer.from('partial');
    await new Promise((r) => setTimeout(r, 20)); // the server is reading by now
    throw new Error('disk went away');
  }
  await client.ready;
  await assert.rejects(call(client, SLOW, {}, { body: failing() }));
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(sawError instanceof DfsError, 'the server saw the body fail');
  close();
});

test('a dead connection fails calls in flight with CONNECTION_CLOSED', async () => {
  const { client, server, close } = setup((rpc) => rpc.register(SLOW, () => new Promise(() => {})));
  const pending = call(client, SLOW, {});
  setTimeout(() => server.destroy(), 20);
  await assert.rejects(pending, { code: 'CONNECTION_CLOSED' });
  assert.throws(() => client.openStream(1, 1, Buffer.alloc(0)), { code: 'CONNECTION_CLOSED' });
  close();
});

test('a request header above the peer limit is refused before it is sent', async () => {
  const { client, close } = setup(() => {});
  await client.ready;
  await assert.rejects(call(client, STAT, { path: 'x'.repeat(20_000) }), { code: 'HEADER_TOO_LARGE' });
  close();
});

test('a handler that reads the request body with for-await can still reply on the stream', async () => {
  const { client, close } = setup((rpc) => rpc.register(STAT, async ({ body }) => {
    let n = 0;
    for await (const c of body) n += (c as Buffer).length;
    return { response: { size: n, names: [] } };
  }));
  const { response } = await callForBuffer(client, STAT, { path: '/' }, { body: Buffer.alloc(300_000) });
  assert.equal(response.size, 300_000);
  close();
});
